"""The job exchange document (JXL): write it as a stream, read and validate it as a stream.

The format is fixed by ``jxl.xsd`` beside this module (docs/internals.md, DESIGN.md §4)::

    <JobExchange version="1" repository="Ohio" generation="812" sinceGen="790"
                 exportTime="1754041845000">
      <Job guid="…" id="101" vv="Parent:2 Ohio:1" modified="…" origin="Ohio" name="…">
        <Note>free text</Note></Job>
      <Deleted kind="Hold" guid="…" vv="…" modified="…" origin="…"/>
    </JobExchange>

Neither side ever holds a whole document: :func:`write_document` serializes one element
at a time through :class:`lxml.etree.xmlfile`, and :class:`DocumentReader` pulls one
element at a time out of :func:`lxml.etree.iterparse`, validates it and drops it.

Reading is hardened (DESIGN.md §7): a DOCTYPE is refused before lxml sees a byte of it
(so no entity trick reaches the parser), entities are never resolved, no DTD is loaded,
nothing is fetched, the input is decoded as UTF-8 whatever it declares, and a counting
wrapper refuses more than ``max_bytes`` of (decompressed) input. gzip input is accepted
transparently. Every problem becomes :class:`~wmsync.errors.ExchangeFormatError` naming
the line and element where it was found.

Why each element is validated on its own rather than with ``iterparse(schema=...)``:
with a schema attached, lxml (6.1 / libxml2 2.14, measured) reports validity errors only
once the whole document has been parsed, always at line 0, and reports a truncated or
malformed document as "no element found (line 0)" or not at all. Validating each child of
the root against the same schema as soon as it ends gives the error at once, with its
line, before the element is handed out.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import threading
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import (
    IO,
    Any,
    BinaryIO,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Type,
    Union,
)

from lxml import etree

from .errors import ExchangeFormatError
from .model import FIELDS, KINDS, Element, vv_from_text, vv_to_text

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SCHEMA_PATH",
    "VERSION",
    "DocumentReader",
    "ExchangeHeader",
    "gzip_file",
    "read_document",
    "validate_file",
    "write_document",
]

#: The document version this module writes and reads.
VERSION = "1"
#: Largest document (after gzip decompression) a reader accepts unless told otherwise.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: The XML Schema of the format, shipped in the package.
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jxl.xsd")

ROOT = "JobExchange"
DELETED = "Deleted"
NOTE = "Note"
#: The writer flushes its output after this many elements.
FLUSH_EVERY = 1000
#: Everything before the root start tag (declaration, comments) must fit in this.
MAX_PROLOG_BYTES = 64 * 1024

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_SPACE = " \t\r\n"
_XSD = "{http://www.w3.org/2001/XMLSchema}"
_VERSION_ATTRS = ("guid", "id", "vv", "modified", "origin")
_ALLOWED: Dict[str, FrozenSet[str]] = {kind: frozenset(FIELDS[kind]) for kind in KINDS}
_CHILD_TAGS: FrozenSet[str] = frozenset((*KINDS, DELETED))
_ENCODING_RE = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]*)["']""")
_ELEMENT_RE = re.compile(r"^Element '([^']+)'")


@dataclass(frozen=True)
class ExchangeHeader:
    """The root's attributes: who exported, which generations the document covers."""

    repository: str
    generation: int
    since_gen: int
    export_time: int
    version: str = VERSION


# --------------------------------------------------------------------------- writing


def write_document(
    target: PathOrFile, header: ExchangeHeader, elements: Iterable[Element]
) -> int:
    """Write an exchange document, one element at a time, in the caller's order.

    Each element goes on a line of its own, so that a reader's errors name a useful line.
    A partly written file at *target* (a path) is removed when writing fails.

    :param target: a path, or a binary file object (left open).
    :param header: the root's attributes.
    :param elements: the versions to write; ``None`` fields are left out.
    :returns: the number of elements written.
    :raises ExchangeFormatError: an element that cannot be written (unknown kind or
        field, text that XML cannot hold such as control characters).
    """
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        with open(path, "wb") as stream:
            try:
                return _write(stream, header, elements)
            except BaseException:
                stream.close()
                with contextlib.suppress(OSError):
                    os.remove(path)
                raise
    return _write(target, header, elements)


def _write(stream: IO[bytes], header: ExchangeHeader, elements: Iterable[Element]) -> int:
    root_attrib = {
        "version": header.version,
        "repository": header.repository,
        "generation": str(int(header.generation)),
        "sinceGen": str(int(header.since_gen)),
        "exportTime": str(int(header.export_time)),
    }
    count = 0
    with etree.xmlfile(stream, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(ROOT, root_attrib):
            xf.write("\n")
            for element in elements:
                xf.write(_to_xml(element))
                xf.write("\n")
                count += 1
                if count % FLUSH_EVERY == 0:
                    xf.flush()
    return count


def _to_xml(element: Element) -> etree._Element:
    kind = element.kind
    if kind not in _ALLOWED:
        raise ExchangeFormatError(f"cannot write an element of unknown kind {kind!r}")
    attrib: Dict[str, str] = {}
    if element.deleted:
        tag = DELETED
        attrib["kind"] = kind
    else:
        tag = kind
    attrib["guid"] = element.guid
    if element.local_id is not None:
        attrib["id"] = str(int(element.local_id))
    attrib["vv"] = vv_to_text(element.vv)
    attrib["modified"] = str(int(element.modified))
    attrib["origin"] = element.origin
    note: Optional[str] = None
    if not element.deleted:
        if not _ALLOWED[kind].issuperset(element.fields):
            unknown = set(element.fields) - _ALLOWED[kind]
            raise ExchangeFormatError(
                f"cannot write {kind} {element.guid}: unknown field(s) "
                + ", ".join(sorted(unknown)),
                element=kind,
            )
        for name in FIELDS[kind]:
            value = element.fields.get(name)
            if value is None:
                continue
            if name == "notes":
                note = str(value)
            else:
                attrib[name] = str(value)
    try:
        node = etree.Element(tag, attrib)
        if note is not None:
            etree.SubElement(node, NOTE).text = note
    except ValueError as exc:  # "All strings must be XML compatible" and the like
        raise ExchangeFormatError(
            f"cannot write {kind} {element.guid}: {exc}", element=tag
        ) from exc
    return node


def gzip_file(src_path: str, dest_path: str) -> int:
    """Compress *src_path* into *dest_path* (streamed), for uploading a smaller body.

    The gzip header carries no file name and a zero time, so equal inputs give equal
    outputs. :func:`read_document` reads the result transparently.

    :returns: the number of bytes written to *dest_path*.
    """
    with open(src_path, "rb") as src, open(dest_path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            shutil.copyfileobj(src, packed, _CHUNK)
        return raw.tell()


# --------------------------------------------------------------------------- schema

_schemas = threading.local()


def _parser() -> etree.XMLParser:
    """The only parser settings this module uses for whole files: nothing resolved."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
    )


def _element_schema() -> etree.XMLSchema:
    """``jxl.xsd`` plus a global declaration for each child of the root.

    With those, one child can be validated on its own (lxml validates an element as the
    root of a document). One per thread: a validator keeps its error log on itself.
    """
    schema: Optional[etree.XMLSchema] = getattr(_schemas, "element", None)
    if schema is None:
        tree = etree.parse(SCHEMA_PATH, _parser())
        root = tree.getroot()
        for tag in _CHILD_TAGS:
            etree.SubElement(root, _XSD + "element", name=tag, type=tag + "Element")
        schema = etree.XMLSchema(tree)
        _schemas.element = schema
    return schema


# --------------------------------------------------------------------------- reading


class _Replay:
    """A read-only stream that returns *prefix* first, then the rest of *stream*."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0 or size >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(self._stream.read(_CHUNK if size is None or size < 0 else size))


class _Limited:
    """Counts what is read and refuses more than *max_bytes*; translates gzip errors."""

    def __init__(self, stream: Any, max_bytes: int, compressed: bool) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._compressed = compressed
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        try:
            data = bytes(self._stream.read(size))
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            if not self._compressed:
                raise
            raise ExchangeFormatError(f"corrupt gzip data: {exc}") from None
        self.count += len(data)
        if self.count > self._max_bytes:
            raise ExchangeFormatError(
                f"document larger than the limit of {self._max_bytes} bytes"
            )
        return data


def _scan_prolog(stream: _Limited) -> bytes:
    """Read up to the root start tag, refusing any DOCTYPE; return the bytes read.

    Only the XML declaration, comments, processing instructions and white space may come
    before the root. The parser later decodes the input as UTF-8 whatever it declares,
    so this byte-level reading sees what the parser will see.
    """
    buf = b""
    pos = 0
    eof = False

    def line() -> int:
        return buf.count(b"\n", 0, pos) + 1

    while True:
        if pos == 0 and buf.startswith(_UTF8_BOM):
            pos = len(_UTF8_BOM)
        while pos < len(buf) and buf[pos : pos + 1] in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
        need_more = False
        if len(buf) - pos < 4:
            need_more = not eof
            if eof and pos >= len(buf):
                raise ExchangeFormatError("not an XML document: no root element", line())
        if not need_more:
            if buf[pos : pos + 1] != b"<":
                raise ExchangeFormatError("not an XML document", line())
            second = buf[pos + 1 : pos + 2]
            if second == b"?":
                end = buf.find(b"?>", pos + 2)
                if end < 0:
                    need_more = True
                else:
                    _check_declaration(buf[pos : end + 2], line())
                    pos = end + 2
                    continue
            elif second == b"!":
                if buf.startswith(b"<!--", pos):
                    end = buf.find(b"-->", pos + 4)
                    if end < 0:
                        need_more = True
                    else:
                        pos = end + 3
                        continue
                else:
                    raise ExchangeFormatError("DOCTYPE not allowed", line())
            else:
                return buf  # the root start tag: lxml takes it from here
        if eof:
            raise ExchangeFormatError("not an XML document: no root element", line())
        if len(buf) >= MAX_PROLOG_BYTES:
            raise ExchangeFormatError(
                f"more than {MAX_PROLOG_BYTES} bytes before the root element", line()
            )
        data = stream.read(_CHUNK)
        if data:
            buf += data
        else:
            eof = True


def _check_declaration(pi: bytes, line: int) -> None:
    if not re.match(rb"<\?xml[ \t\r\n]", pi):
        return
    match = _ENCODING_RE.search(pi)
    if match and match.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        encoding = match.group(1).decode("ascii")
        raise ExchangeFormatError(f"encoding must be UTF-8, not {encoding!r}", line)


def _line(node: etree._Element) -> Optional[int]:
    # lxml-stubs declare sourceline as "..." (untyped); it is Optional[int].
    line: Any = node.sourceline
    return int(line) if line else None


def _is_space(text: Optional[str]) -> bool:
    return not text or not text.strip(_XML_SPACE)


class DocumentReader:
    """An open exchange document: ``header`` at once, then the elements one at a time.

    Iterate it once; each item is a :class:`~wmsync.model.Element`. Elements already
    handed out are dropped from the parser's tree, so memory does not grow with the
    document. Files the reader opened are closed when the document ends, on the first
    error, on :meth:`close` and on leaving a ``with`` block.

    :ivar header: the :class:`ExchangeHeader`, read on opening.
    :ivar count: how many elements have been handed out so far.
    :raises ExchangeFormatError: on opening or while iterating, for any invalid input.
    """

    header: ExchangeHeader

    def __init__(self, source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.count = 0
        self._closers: List[Any] = []
        self._open_tags: List[str] = []
        self._events: Optional[Iterator[Tuple[str, etree._Element]]] = None
        self._root: Optional[etree._Element] = None
        self._previous: Optional[etree._Element] = None
        self._done = False
        try:
            stream = self._open(source)
            self._schema = _element_schema()
            # Every safety option is passed explicitly: lxml 4.x resolves entities by
            # default (and iterparse does until 6.1).
            self._events = etree.iterparse(
                stream,
                events=("start", "end"),
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                dtd_validation=False,
                huge_tree=False,
                recover=False,
                remove_comments=True,
                remove_pis=True,
                encoding="UTF-8",
            )
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    # -- opening

    def _open(self, source: PathOrFile) -> _Replay:
        if isinstance(source, (str, os.PathLike)):
            raw: Any = open(os.fspath(source), "rb")  # closed in close()
            self._closers.append(raw)
        else:
            raw = source
        magic = b""
        while len(magic) < 2:
            data = raw.read(2 - len(magic))
            if not data:
                break
            magic += data
        stream: Any = _Replay(magic, raw)
        compressed = magic == _GZIP_MAGIC
        if compressed:
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
            self._closers.append(stream)
        limited = _Limited(stream, self.max_bytes, compressed)
        return _Replay(_scan_prolog(limited), limited)

    def _read_header(self) -> ExchangeHeader:
        try:
            _, root = self._next_event()
        except StopIteration:
            raise ExchangeFormatError("not an XML document: no root element") from None
        tag = str(root.tag)
        line = _line(root)
        if tag != ROOT:
            raise ExchangeFormatError(
                f"not a job exchange document: the root element is <{tag}>", line, tag
            )
        version = root.get("version")
        if version is not None and version != VERSION:
            raise ExchangeFormatError(
                f"unsupported document version {version!r} (this reader reads {VERSION!r})",
                line,
                tag,
            )
        bare = etree.Element(ROOT, {str(k): str(v) for k, v in root.attrib.items()})
        if not self._schema.validate(bare):
            raise ExchangeFormatError(self._schema_error()[0], line, tag)
        self._root = root
        return ExchangeHeader(
            repository=root.get("repository", ""),
            generation=int(root.get("generation", "0")),
            since_gen=int(root.get("sinceGen", "0")),
            export_time=int(root.get("exportTime", "0")),
            version=VERSION,
        )

    # -- iterating

    def __iter__(self) -> DocumentReader:
        return self

    def __next__(self) -> Element:
        if self._done:
            raise StopIteration
        try:
            return self._next_element()
        except BaseException:  # the end (StopIteration) or an error: release the files
            self.close()
            raise

    def _next_element(self) -> Element:
        root = self._root
        assert root is not None
        while True:
            try:
                event, node = self._next_event()
            except StopIteration:
                raise ExchangeFormatError(
                    "truncated document: the root element is not closed",
                    None,
                    self._open_tags[-1] if self._open_tags else ROOT,
                ) from None
            if event == "start":
                continue
            depth = len(self._open_tags)
            if depth == 0:  # the root ended
                self._check_text(root)
                while True:  # only an error can follow the root's end
                    try:
                        self._next_event()
                    except StopIteration:
                        break
                raise StopIteration
            if depth == 1:  # a child of the root ended
                self._check_text(root)
                element = self._to_element(node)
                node.clear()
                while node.getprevious() is not None:
                    del root[0]
                self._previous = node
                self.count += 1
                return element

    def _check_text(self, root: etree._Element) -> None:
        """Only white space may stand between the root's children."""
        previous = self._previous
        if previous is None:
            if not _is_space(root.text):
                raise ExchangeFormatError("text not allowed here", _line(root), ROOT)
        elif not _is_space(previous.tail):
            raise ExchangeFormatError("text not allowed here", _line(previous), ROOT)

    def _next_event(self) -> Tuple[str, etree._Element]:
        assert self._events is not None
        try:
            event, node = next(self._events)
        except etree.LxmlError as exc:
            raise self._translate(exc) from exc
        if event == "start":
            self._open_tags.append(str(node.tag))
        else:
            self._open_tags.pop()
        return event, node

    def _translate(self, exc: etree.LxmlError) -> ExchangeFormatError:
        message = str(getattr(exc, "msg", "") or exc)
        line = getattr(exc, "lineno", None) or None
        match = _ELEMENT_RE.match(message)
        if match:
            element: Optional[str] = match.group(1)
        else:
            element = self._open_tags[-1] if self._open_tags else None
        return ExchangeFormatError(message, line, element)

    def _schema_error(self) -> Tuple[str, Optional[int]]:
        """The message and line of the last validation error."""
        # lxml-stubs leave out _ErrorLog.last_error and type its entries loosely.
        entry: Any = getattr(self._schema.error_log, "last_error", None)
        if entry is None:
            return "invalid element", None
        return str(entry.message), (int(entry.line) or None)

    def _to_element(self, node: etree._Element) -> Element:
        tag = str(node.tag)
        line = _line(node)
        if tag not in _CHILD_TAGS:
            raise ExchangeFormatError(f"unexpected element <{tag}>", line, tag)
        try:
            valid = self._schema.validate(node)
        except etree.LxmlError as exc:  # e.g. an unresolved entity reference inside
            raise ExchangeFormatError(f"cannot validate: {exc}", line, tag) from exc
        if not valid:
            message, error_line = self._schema_error()
            match = _ELEMENT_RE.match(message)  # names the inner element when it failed
            if not error_line or error_line >= 65535:  # libxml2 caps validation lines
                error_line = line
            raise ExchangeFormatError(message, error_line, match.group(1) if match else tag)
        attrib = node.attrib
        vv_text = str(attrib["vv"])
        try:
            vv = vv_from_text(vv_text)
        except ValueError as exc:
            raise ExchangeFormatError(f"invalid vv {vv_text!r}: {exc}", line, tag) from None
        local_id = int(attrib["id"]) if "id" in attrib else None
        if tag == DELETED:
            return Element(
                kind=str(attrib["kind"]),
                guid=str(attrib["guid"]),
                vv=vv,
                modified=int(attrib["modified"]),
                origin=str(attrib["origin"]),
                fields={},
                deleted=True,
                local_id=local_id,
            )
        fields = {
            str(name): str(value)
            for name, value in attrib.items()
            if name not in _VERSION_ATTRS
        }
        for child in node:  # only <Note>, in a <Job> (the schema said so)
            fields["notes"] = child.text or ""
        return Element(
            kind=tag,
            guid=str(attrib["guid"]),
            vv=vv,
            modified=int(attrib["modified"]),
            origin=str(attrib["origin"]),
            fields=fields,
            deleted=False,
            local_id=local_id,
        )

    # -- closing

    def close(self) -> None:
        """Stop reading and close whatever the reader opened (not a caller's file)."""
        self._done = True
        self._events = None
        self._root = None
        self._previous = None
        while self._closers:
            self._closers.pop().close()

    def __enter__(self) -> DocumentReader:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def read_document(source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> DocumentReader:
    """Open an exchange document (plain or gzip) for streaming.

    :param source: a path, or a binary file object (left open).
    :param max_bytes: refuse documents larger than this, counted after decompression.
    :returns: a :class:`DocumentReader`; its ``header`` is already read.
    :raises ExchangeFormatError: the start of the document is not valid.
    """
    return DocumentReader(source, max_bytes=max_bytes)


def validate_file(
    path: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Tuple[ExchangeHeader, int]:
    """Stream a whole document through the reader.

    :returns: the header and the number of elements.
    :raises ExchangeFormatError: the document is not valid.
    """
    with read_document(path, max_bytes=max_bytes) as reader:
        for _ in reader:
            pass
        return reader.header, reader.count
