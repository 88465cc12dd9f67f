"""Quick reading for the emulator's import: :func:`read_records` (see below)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Type

from lxml import etree

from .checks import _fast_shapes, _Shape
from .common import (
    _CHUNK,
    _XML_SPACE,
    DEFAULT_MAX_BYTES,
    DELETED,
    NOTE,
    ROOT,
    VERSION,
    ExchangeHeader,
    PathOrFile,
)
from .schema import _element_schema, _parser
from .source import _open_source

# The emulator's import reads documents of 10^5 elements and more, where DocumentReader
# costs about 35 µs per element: iterparse builds an element per child, its attributes are
# read back one by one, and an Element is built from them. read_records() reads the same
# document through a parser *target* instead: libxml2 hands each start tag's attributes
# over as a dict, no tree is built, and each child becomes a plain tuple (about 15 µs).
# It vouches only for what it is sure of: whatever it does not understand (anything the
# compiled checks do not accept, text or comments where the writer puts none, an
# attribute value with "&" in it, which libxml2 hands to a target still escaped as
# "&#38;") raises NotCertain, and the caller then reads the document with read_document(),
# which accepts it or gives the reference error message, with line and element.

#: One element as :func:`read_records` gives it: ``(kind, guid, local_id, vv text,
#: modified, origin, deleted, fields)``; ``fields`` holds the content fields (with
#: ``notes`` from a <Note> child) and is empty for a tombstone.
Record = Tuple[str, str, Optional[int], str, int, str, bool, Dict[str, str]]


class NotCertain(Exception):
    """The quick reader cannot vouch for this document: read it with :func:`read_document`."""


_PROBE = (
    b"<?xml version='1.0' encoding='UTF-8'?><!-- p -->\n<R a=\"x\ny\tz\" b=\"&#10;&lt;&gt;"
    b"&quot;'&#x9;\xc3\xa9\xf0\x9f\x98\x80\" c=\"\"><N>a&lt;b&#38;<![CDATA[<c>]]>\r\n"
    b"\xe2\x82\xac&gt;</N></R>"
)
_probe_result: Optional[bool] = None


class _Probe:
    def __init__(self) -> None:
        self.seen: List[Any] = []

    def start(self, tag: str, attrib: Dict[str, str]) -> None:
        self.seen.append((tag, dict(attrib)))

    def end(self, tag: str) -> None:
        self.seen.append(("/", tag))

    def data(self, text: str) -> None:
        if self.seen and self.seen[-1][0] == "text":
            self.seen[-1] = ("text", self.seen[-1][1] + text)
        else:
            self.seen.append(("text", text))

    def close(self) -> List[Any]:
        return self.seen


def _target_parser(target: Any) -> etree.XMLParser:
    return etree.XMLParser(
        target=target,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        encoding="UTF-8",
    )


def _quick_reading_works() -> bool:
    """True when this lxml hands a parser target the same names, values and text the
    tree parser reads (checked once per process, on a document with the tricky cases);
    otherwise the quick reader always gives up."""
    global _probe_result
    if _probe_result is None:
        try:
            parser = _target_parser(_Probe())
            parser.feed(_PROBE)
            seen: Any = parser.close()  # the target's close(), not an element
            root = etree.fromstring(_PROBE, _parser())
            expected = [
                (root.tag, dict(root.attrib)), (root[0].tag, dict(root[0].attrib)),
                ("text", root[0].text), ("/", root[0].tag), ("/", root.tag),
            ]
            _probe_result = seen == expected
        except Exception:  # any surprise: use the reference reader
            _probe_result = False
    return _probe_result


class _RecordTarget:
    """Parser target that turns each child of the root into a :data:`Record`."""

    def __init__(self, shapes: Dict[str, _Shape], schema: etree.XMLSchema) -> None:
        self.depth = 0
        self.done = False
        self.header: Optional[ExchangeHeader] = None
        self.records: List[Record] = []
        self._shapes = shapes
        self._schema = schema
        self._tag = ""
        self._attrib: Dict[str, str] = {}
        self._shape: Optional[_Shape] = None
        self._note: Optional[str] = None
        # Per kind, per attribute: the values already accepted (the checks are pure), so
        # that most attributes of a large document, which repeat a few values (vv,
        # origin, job type, numbers), cost one set lookup. Unknown names have none.
        self._accepted: Dict[str, Dict[str, Set[str]]] = {}

    def _accept(self, tag: str, name: str, value: str) -> None:
        """Check one attribute the long way; remember the value once it passed."""
        shape = self._shapes[tag]
        if name not in shape.attrs or "&" in value:
            raise NotCertain(name)
        rule = shape.attrs[name]
        if rule is not None and (
            rule.match(value) is None or (rule.low is not None and int(value) < rule.low)
        ):
            raise NotCertain(name)
        accepted = self._accepted[tag][name]
        if len(accepted) < 4096:
            accepted.add(value)

    def start(self, tag: str, attrib: Dict[str, str]) -> None:
        depth = self.depth = self.depth + 1
        if depth == 2:
            accepted = self._accepted.get(tag)
            if accepted is None:
                shape = self._shapes.get(tag)
                if shape is None:
                    raise NotCertain(tag)
                accepted = self._accepted[tag] = {name: set() for name in shape.attrs}
            for name, value in attrib.items():
                seen = accepted.get(name)
                if seen is None or value not in seen:
                    self._accept(tag, name, value)
            shape = self._shapes[tag]
            if not shape.required.issubset(attrib):
                raise NotCertain(tag)
            self._tag, self._attrib, self._shape, self._note = tag, attrib, shape, None
        elif depth == 3:
            shape = self._shape
            if tag != NOTE or attrib or shape is None or not shape.note or self._note is not None:
                raise NotCertain(tag)
            self._note = ""
        elif depth == 1:
            self._start_root(tag, attrib)
        else:
            raise NotCertain(tag)

    def _start_root(self, tag: str, attrib: Dict[str, str]) -> None:
        if tag != ROOT or attrib.get("version", VERSION) != VERSION:
            raise NotCertain(tag)
        if any("&" in value for value in attrib.values()):
            raise NotCertain(tag)
        if not self._schema.validate(etree.Element(ROOT, attrib)):
            raise NotCertain(tag)
        self.header = ExchangeHeader(
            repository=attrib.get("repository", ""),
            generation=int(attrib.get("generation", "0")),
            since_gen=int(attrib.get("sinceGen", "0")),
            export_time=int(attrib.get("exportTime", "0")),
            version=VERSION,
        )

    def end(self, tag: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if depth == 2:
            attrib = self._attrib
            guid = attrib.pop("guid")
            local_id = attrib.pop("id", None)
            vv = attrib.pop("vv")
            modified = int(attrib.pop("modified"))
            origin = attrib.pop("origin")
            if tag == DELETED:
                self.records.append((attrib["kind"], guid, None if local_id is None
                                     else int(local_id), vv, modified, origin, True, {}))
                return
            if self._note is not None:
                attrib["notes"] = self._note
            self.records.append((tag, guid, None if local_id is None else int(local_id),
                                 vv, modified, origin, False, attrib))
        elif depth == 1:
            self.done = True

    def data(self, text: str) -> None:
        depth = self.depth
        if depth == 3:
            self._note = (self._note or "") + text
        elif depth == 1:
            if text.strip(_XML_SPACE):
                raise NotCertain("text")
        elif depth != 0:
            raise NotCertain("text")

    def comment(self, text: str) -> None:
        if self.depth:
            raise NotCertain("comment")

    def pi(self, target: str, data: Optional[str] = None) -> None:
        if self.depth:
            raise NotCertain("processing instruction")

    def close(self) -> None:
        return None


class RecordReader:
    """A document opened by :func:`read_records`: ``header``, then lists of records."""

    header: ExchangeHeader

    def __init__(self, source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not _quick_reading_works():
            raise NotCertain("this lxml")
        self._closers: List[Any] = []
        try:
            self._stream = _open_source(source, max_bytes, self._closers)
            self._target = _RecordTarget(_fast_shapes(), _element_schema())
            self._parser = _target_parser(self._target)
            while self._target.header is None:
                data = self._stream.read(_CHUNK)
                if not data:
                    raise NotCertain("no root element")
                self._parser.feed(data)
            self.header = self._target.header
        except BaseException:
            self.close()
            raise

    def batches(self) -> Iterator[List[Record]]:
        """The elements in document order, a few hundred at a time.

        :raises NotCertain: anywhere (the caller must then drop what it did with them).
        """
        target = self._target
        while True:
            if target.records:
                records, target.records = target.records, []
                yield records
            data = self._stream.read(_CHUNK)
            if not data:
                break
            self._parser.feed(data)
        self._parser.close()
        if target.records:
            records, target.records = target.records, []
            yield records
        if not target.done:
            raise NotCertain("truncated")

    def close(self) -> None:
        """Close whatever the reader opened (not a caller's file)."""
        while self._closers:
            self._closers.pop().close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def read_records(source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RecordReader:
    """Open a document for the quick reading (see :class:`NotCertain`).

    :raises NotCertain: the quick reader cannot vouch for the document (read it with
        :func:`read_document`, which gives the exact error, or accepts it).
    :raises ExchangeFormatError: the document is certainly invalid (a DOCTYPE, too large).
    """
    return RecordReader(source, max_bytes=max_bytes)
