"""Quick reading for the repository's import: :func:`read_records` (see below).

Only :class:`~wmsync.repository.importing.Importer` uses it, as an optimisation: whatever
it cannot vouch for raises :class:`NotCertain`, and the import then reads the document
with the reference reader (:func:`wmsync.exchange.read_document`).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Set, Type

from lxml import etree

from wmsync.errors import ExchangeFormatError
from wmsync.exchange.checks import Shape, fast_shapes
from wmsync.exchange.common import (
    CHUNK,
    DEFAULT_MAX_BYTES,
    NOTE,
    XML_SPACE,
    ExchangeHeader,
    PathOrFile,
)
from wmsync.exchange.elements import Record, read_header, to_record
from wmsync.exchange.parsers import new_parser
from wmsync.exchange.source import open_source

# The repository's import reads documents of 10^5 elements and more, where DocumentReader
# costs about 35 µs per element: iterparse builds an element per child, its attributes are
# read back one by one, and an Element is built from them. read_records() reads the same
# document through a parser *target* instead: libxml2 hands each start tag's attributes
# over as a dict, no tree is built, and each child becomes a plain tuple (about 15 µs),
# built by the same function as the reference reader's elements (exchange.to_record).
# It vouches only for what it is sure of: whatever it does not understand (anything the
# compiled checks do not accept, text or comments where the writer puts none, an
# attribute value with "&" in it, which libxml2 hands to a target still escaped as
# "&#38;", a document that is not well-formed) raises NotCertain, and the importer then
# reads the document with read_document(), which accepts it or gives the reference error
# message, with line and element.


class NotCertain(Exception):
    """The quick reader cannot vouch for this document: read it with
    :func:`wmsync.exchange.read_document`."""


_PROBE = (
    b"<?xml version='1.0' encoding='UTF-8'?><!-- p -->\n<R a=\"x\ny\tz\" b=\"&#10;&lt;&gt;"
    b'&quot;\'&#x9;\xc3\xa9\xf0\x9f\x98\x80" c=""><N>a&lt;b&#38;<![CDATA[<c>]]>\r\n'
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


def _quick_reading_works() -> bool:
    """True when this lxml hands a parser target the same names, values and text the
    tree parser reads (checked once per process, on a document with the tricky cases);
    otherwise the quick reader always gives up."""
    global _probe_result
    if _probe_result is None:
        try:
            parser = new_parser(target=_Probe())
            parser.feed(_PROBE)
            seen: Any = parser.close()  # the target's close(), not an element
            root = etree.fromstring(_PROBE, new_parser())
            expected = [
                (root.tag, dict(root.attrib)),
                (root[0].tag, dict(root[0].attrib)),
                ("text", root[0].text),
                ("/", root[0].tag),
                ("/", root.tag),
            ]
            _probe_result = seen == expected
        except (etree.LxmlError, IndexError, TypeError, AttributeError):  # an odd lxml: give up
            _probe_result = False
    return _probe_result


class _RecordTarget:
    """Parser target that turns each child of the root into a :data:`Record`."""

    def __init__(self, shapes: Dict[str, Shape]) -> None:
        self.depth = 0
        self.done = False
        self.header: Optional[ExchangeHeader] = None
        self.records: List[Record] = []
        self._shapes = shapes
        self._tag = ""
        self._attrib: Dict[str, str] = {}
        self._shape: Optional[Shape] = None
        # The text of the element's <Note> in the pieces libxml2 hands over (one per
        # character reference: joined once, at the end), ``None`` without a <Note>.
        self._note: Optional[List[str]] = None
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
            self._note = []
        elif depth == 1:
            self._start_root(tag, attrib)
        else:
            raise NotCertain(tag)

    def _start_root(self, tag: str, attrib: Dict[str, str]) -> None:
        if any("&" in value for value in attrib.values()):
            raise NotCertain(tag)
        try:
            self.header = read_header(tag, attrib)
        except ExchangeFormatError:  # the reference reader gives the message
            raise NotCertain(tag) from None

    def end(self, tag: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if depth == 2:
            try:
                note = None if self._note is None else "".join(self._note)
                self.records.append(to_record(tag, self._attrib, note))
            except ValueError:  # broken escaped text: the reference reader names it
                raise NotCertain(tag) from None
        elif depth == 1:
            self.done = True

    def data(self, text: str) -> None:
        depth = self.depth
        if depth == 3:
            if self._note is None:
                raise NotCertain("text")
            self._note.append(text)
        elif depth == 1:
            if text.strip(XML_SPACE):
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
            self._stream = open_source(source, max_bytes, self._closers)
            self._target = _RecordTarget(fast_shapes())
            self._parser = new_parser(target=self._target)
            while self._target.header is None:
                data = self._stream.read(CHUNK)
                if not data:
                    raise NotCertain("no root element")
                self._feed(data)
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
            data = self._stream.read(CHUNK)
            if not data:
                break
            self._feed(data)
        self._feed(None)
        if target.records:
            records, target.records = target.records, []
            yield records
        if not target.done:
            raise NotCertain("truncated")

    def _feed(self, data: Optional[bytes]) -> None:
        """Give the parser more input (``None``: the end); a document that is not
        well-formed is for the reference reader to describe."""
        try:
            if data is None:
                self._parser.close()
            else:
                self._parser.feed(data)
        except etree.LxmlError:
            raise NotCertain("not well-formed") from None

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
