"""The job exchange document (JXL): write it as a stream, read and validate it as a stream.

The format is fixed by ``jxl.xsd`` beside this module (docs/internals.md, DESIGN.md §4)::

    <JobExchange version="1" repository="Ohio" generation="812" sinceGen="790"
                 exportTime="1754041845000">
      <Job guid="…" id="101" vv="Parent:2 Ohio:1" modified="…" origin="Ohio" name="…">
        <Note>free text</Note></Job>
      <Deleted kind="Hold" guid="…" vv="…" modified="…" origin="…"/>
    </JobExchange>

Neither side ever holds a whole document: :func:`write_document` serializes one element
at a time (as escaped text, flushed every :data:`FLUSH_EVERY` elements), and
:class:`DocumentReader` pulls one element at a time out of :func:`lxml.etree.iterparse`,
validates it and drops it.

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
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Set,
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
    # The markup is built as text (escaped exactly as lxml serializes it): building an
    # lxml element per version and serializing it cost about four times as much.
    root = " ".join(
        f'{name}="{_escape_attr(value, ROOT, ROOT)}"'
        for name, value in (
            ("version", header.version),
            ("repository", header.repository),
            ("generation", str(int(header.generation))),
            ("sinceGen", str(int(header.since_gen))),
            ("exportTime", str(int(header.export_time))),
        )
    )
    stream.write(f"<?xml version='1.0' encoding='UTF-8'?>\n<{ROOT} {root}>\n".encode())
    count = 0
    chunk: List[str] = []
    for element in elements:
        chunk.append(_to_text(element))
        count += 1
        if count % FLUSH_EVERY == 0:
            stream.write("".join(chunk).encode("utf-8"))
            chunk = []
    chunk.append(f"</{ROOT}>")
    stream.write("".join(chunk).encode("utf-8"))
    return count


# Characters XML 1.0 cannot hold (lxml refuses them too), and those that need escaping.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;",
     "\r": "&#13;"}
)
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NOT_XML_MESSAGE = (
    "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control "
    "characters"
)
_vv_texts: Dict[Tuple[Tuple[str, int], ...], str] = {}


def _escape_attr(value: str, kind: str, tag: str, guid: str = "") -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    if _NOT_XML.search(value) is not None:
        raise ExchangeFormatError(f"cannot write {kind} {guid}: {_NOT_XML_MESSAGE}", element=tag)
    return value.translate(_ATTR_ESCAPES)


def _vv_text(vv: Mapping[str, int]) -> str:
    """``vv_to_text``, remembered: most versions of a document share a few vectors."""
    key = tuple(sorted(vv.items()))
    text = _vv_texts.get(key)
    if text is None:
        if len(_vv_texts) > 10_000:
            _vv_texts.clear()
        text = _vv_texts[key] = vv_to_text(vv)
    return text


def _to_text(element: Element) -> str:
    """One element as a line of markup."""
    kind = element.kind
    if kind not in _ALLOWED:
        raise ExchangeFormatError(f"cannot write an element of unknown kind {kind!r}")
    guid = element.guid
    tag = DELETED if element.deleted else kind
    parts = [f'<{DELETED} kind="{kind}" guid="' if element.deleted else f'<{kind} guid="',
             _escape_attr(guid, kind, tag, guid)]
    if element.local_id is not None:
        parts.append(f'" id="{int(element.local_id)}')
    parts.append(f'" vv="{_escape_attr(_vv_text(element.vv), kind, tag, guid)}'
                 f'" modified="{int(element.modified)}'
                 f'" origin="{_escape_attr(element.origin, kind, tag, guid)}"')
    note: Optional[str] = None
    if not element.deleted:
        fields = element.fields
        if not _ALLOWED[kind].issuperset(fields):
            unknown = set(fields) - _ALLOWED[kind]
            raise ExchangeFormatError(
                f"cannot write {kind} {guid}: unknown field(s) " + ", ".join(sorted(unknown)),
                element=kind,
            )
        for name in FIELDS[kind]:
            value = fields.get(name)
            if value is None:
                continue
            if name == "notes":
                note = str(value)
            else:
                parts.append(f' {name}="{_escape_attr(str(value), kind, tag, guid)}"')
    if note is None:
        parts.append("/>\n")
    else:
        if _TEXT_SPECIAL.search(note) is not None:
            if _NOT_XML.search(note) is not None:
                raise ExchangeFormatError(
                    f"cannot write {kind} {guid}: {_NOT_XML_MESSAGE}", element=tag
                )
            note = note.translate(_TEXT_ESCAPES)
        parts.append(f"><{NOTE}>{note}</{NOTE}></{kind}>\n")
    return "".join(parts)


def gzip_file(src_path: str, dest_path: str, *, compresslevel: int = 9) -> int:
    """Compress *src_path* into *dest_path* (streamed), for uploading a smaller body.

    The gzip header carries no file name and a zero time, so equal inputs give equal
    outputs. :func:`read_document` reads the result transparently.

    :param compresslevel: zlib's 1 (fastest) to 9 (smallest); exchange documents are
        about 9x smaller at 1 and 10x at 6-9, which costs 3-5 times the CPU.
    :returns: the number of bytes written to *dest_path*.
    """
    with open(src_path, "rb") as src, open(dest_path, "wb") as raw:
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as packed:
            shutil.copyfileobj(src, packed, _CHUNK)
        return raw.tell()


# --------------------------------------------------------------------------- schema

_schemas = threading.local()
_schema_lock = threading.Lock()


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
        # One thread at a time: a run's workers start reading at the same moment, and
        # libxml2's schema parser is not safe to run in several threads at once (seen as
        # a sporadic XMLSchemaParseError under load).
        with _schema_lock:
            tree = etree.parse(SCHEMA_PATH, _parser())
            root = tree.getroot()
            for tag in _CHILD_TAGS:
                etree.SubElement(root, _XSD + "element", name=tag, type=tag + "Element")
            schema = etree.XMLSchema(tree)
        _schemas.element = schema
    return schema


# --------------------------------------------------------------------------- fast checks
#
# Validating each element with the XMLSchema costs about 20 µs; most of a large import
# went there. So each child of the root is first checked against a *compiled* form of the
# same schema: per kind, the allowed attributes with a check per simple type, the
# required ones and whether a <Note> child may appear, all generated from jxl.xsd when
# first needed. The compiled checks are conservative: whatever they accept, the schema
# accepts (tests/test_exchange_perf.py proves it on a corpus); whatever they do not
# understand or refuse goes to the XMLSchema, which stays the reference and gives the
# error message. So the XSD decides every refusal, with the same text as before.

_XML_WS = frozenset(" \t\r\n")
_LONG_RANGE = (-(2**63), 2**63 - 1)
# Pattern text the compiler translates to Python's re: literals, classes, groups,
# quantifiers, and "\-" or "\." escapes. Anything else (\d, \p{..}, ^, $ ...) means
# "let the XMLSchema decide" for that type.
_SAFE_PATTERN = re.compile(r"(?:[A-Za-z0-9_.~%:,\[\]{}()?*+| -]|\\[-.])*")

class _Rule(NamedTuple):
    """The compiled check of one simple type: *match* (an anchored regex's ``match``)
    must match; *low*/*high* bound the integer value when set."""

    match: Callable[[str], Optional[re.Match[str]]]
    low: Optional[int] = None
    high: Optional[int] = None


_NEVER = _Rule(re.compile(r"(?!)").match)  # matches nothing: the schema decides


@dataclass(frozen=True)
class _Shape:
    """What one kind of element may carry, compiled from the schema.

    ``attrs`` maps each allowed attribute to its rule (``None``: any text); ``note``
    says whether one text-only ``<Note>`` child may appear.
    """

    attrs: Dict[str, Optional[_Rule]]
    required: FrozenSet[str]
    note: bool


def _compile_simple(node: etree._Element) -> Optional[_Rule]:
    """The rule of one ``xs:simpleType`` (a restriction of xs:string or xs:long)."""
    restrictions = node.findall(_XSD + "restriction")
    if len(restrictions) != 1 or len(node) != 1:
        return _NEVER
    restriction = restrictions[0]
    base = restriction.get("base")
    patterns: List[str] = []
    min_length: Optional[int] = None
    low: Optional[int] = None
    values: List[str] = []
    for facet in restriction:
        if not isinstance(facet.tag, str):
            continue  # a comment
        name = facet.tag[len(_XSD):] if facet.tag.startswith(_XSD) else ""
        value = str(facet.get("value", ""))
        if name == "pattern" and _SAFE_PATTERN.fullmatch(value):
            patterns.append(value)
        elif name == "minLength" and base == "xs:string":
            min_length = int(value)
        elif name == "minInclusive" and base == "xs:long":
            low = int(value)
        elif name == "enumeration" and base == "xs:string":
            values.append(re.escape(value))
        else:
            return _NEVER  # a facet the compiler does not know: the schema decides
    # Every facet becomes a lookahead of one anchored regex (several patterns in one
    # restriction would be alternatives in XSD; requiring all of them is stricter, so
    # still safe).
    parts = [rf"(?=(?:{p})\Z)" for p in patterns]
    if base == "xs:long":
        # Up to 18 digits always fit a long; longer numbers (and white space, which
        # xs:long would collapse) are left to the schema.
        parts.append(r"(?=[+-]?[0-9]{1,18}\Z)")
        return _Rule(re.compile("".join(parts)).match, low, None)
    if base != "xs:string":
        return _NEVER
    if min_length is not None:
        parts.append(rf"(?=.{{{min_length},}}\Z)")
    if values:
        parts.append(rf"(?=(?:{'|'.join(values)})\Z)")
    if not parts:
        return None  # any text
    return _Rule(re.compile("".join(parts), re.DOTALL).match)


def _compile_shapes(path: str = SCHEMA_PATH) -> Dict[str, _Shape]:
    """Compile the schema's root children into :class:`_Shape` s (see above)."""
    root = etree.parse(path, _parser()).getroot()
    simple: Dict[str, Optional[_Rule]] = {"xs:string": None}
    for node in root.iterfind(_XSD + "simpleType"):
        simple[str(node.get("name"))] = _compile_simple(node)
    groups = {str(g.get("name")): g for g in root.iterfind(_XSD + "attributeGroup")}

    def attributes(
        holder: etree._Element, attrs: Dict[str, Optional[_Rule]], required: List[str]
    ) -> bool:
        for item in holder:
            if not isinstance(item.tag, str):
                continue
            if item.tag == _XSD + "attribute":
                name, type_name = str(item.get("name")), str(item.get("type"))
                attrs[name] = simple.get(type_name, _NEVER)
                if item.get("use") == "required":
                    required.append(name)
            elif item.tag == _XSD + "attributeGroup" and item.get("ref") in groups:
                if not attributes(groups[str(item.get("ref"))], attrs, required):
                    return False
            elif item.tag != _XSD + "sequence":
                return False
        return True

    shapes: Dict[str, _Shape] = {}
    declared = root.find(f"{_XSD}element[@name='{ROOT}']/{_XSD}complexType/{_XSD}choice")
    for element in [] if declared is None else declared.iterfind(_XSD + "element"):
        tag, type_name = str(element.get("name")), str(element.get("type"))
        complex_type = root.find(f"{_XSD}complexType[@name='{type_name}']")
        if complex_type is None or complex_type.get("mixed") not in (None, "false"):
            continue
        attrs: Dict[str, Optional[_Rule]] = {}
        required: List[str] = []
        if not attributes(complex_type, attrs, required):
            continue
        sequence = complex_type.findall(_XSD + "sequence")
        note = False
        if sequence:
            items = [i for i in sequence[0] if isinstance(i.tag, str)]
            if (
                len(sequence) != 1
                or len(items) != 1
                or items[0].get("name") != NOTE
                or items[0].get("type") != "xs:string"
                or items[0].get("minOccurs") != "0"
                or items[0].get("maxOccurs") not in (None, "1")
            ):
                continue
            note = True
        shapes[tag] = _Shape(attrs, frozenset(required), note)
    return shapes


_shapes: Optional[Dict[str, _Shape]] = None


def _fast_shapes() -> Dict[str, _Shape]:
    global _shapes
    if _shapes is None:
        with _schema_lock:
            if _shapes is None:
                _shapes = _compile_shapes()
    return _shapes


def _fast_valid(node: etree._Element, attrs: Dict[str, str], shape: _Shape) -> bool:
    """True only when the schema would accept *node* (whose attributes are *attrs*)."""
    if node.text is not None:
        return False
    rules = shape.attrs
    for name, value in attrs.items():
        rule = rules.get(name, _NEVER)
        if rule is None:
            continue
        if rule.match(value) is None:
            return False
        if rule.low is not None and int(value) < rule.low:
            return False
    if not shape.required.issubset(attrs):
        return False
    count = len(node)
    if count == 0:
        return True
    if count != 1 or not shape.note:
        return False
    child = node[0]
    return (
        child.tag == NOTE
        and len(child) == 0
        and not child.attrib
        and child.tail is None
    )


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


def _open_source(source: PathOrFile, max_bytes: int, closers: List[Any]) -> _Replay:
    """The document's bytes (gunzipped, counted, past a prolog without DOCTYPE); what it
    opens is appended to *closers*."""
    if isinstance(source, (str, os.PathLike)):
        raw: Any = open(os.fspath(source), "rb")  # closed by the caller, via closers
        closers.append(raw)
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
        closers.append(stream)
    limited = _Limited(stream, max_bytes, compressed)
    return _Replay(_scan_prolog(limited), limited)


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
            self._shapes = _fast_shapes()
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
        return _open_source(source, self.max_bytes, self._closers)

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
        # lxml-stubs type attribute names and values as str | bytes; lxml gives str.
        attrib: Dict[str, str] = dict(node.items())  # type: ignore[arg-type]
        shape = self._shapes.get(tag)
        if shape is not None and _fast_valid(node, attrib, shape):
            valid = True  # what the compiled checks accept, the schema accepts
        else:
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
        vv_text = attrib["vv"]
        try:
            vv = vv_from_text(vv_text)
        except ValueError as exc:
            raise ExchangeFormatError(f"invalid vv {vv_text!r}: {exc}", line, tag) from None
        guid = attrib.pop("guid")
        local_id_text = attrib.pop("id", None)
        local_id = int(local_id_text) if local_id_text is not None else None
        del attrib["vv"]
        modified = int(attrib.pop("modified"))
        origin = attrib.pop("origin")
        if tag == DELETED:
            return Element(
                kind=attrib["kind"],
                guid=guid,
                vv=vv,
                modified=modified,
                origin=origin,
                fields={},
                deleted=True,
                local_id=local_id,
            )
        if len(node):  # only <Note>, in a <Job> (the schema said so)
            attrib["notes"] = node[0].text or ""
        return Element(
            kind=tag,
            guid=guid,
            vv=vv,
            modified=modified,
            origin=origin,
            fields=attrib,
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


# --------------------------------------------------------------------------- quick reading
#
# The emulator's import reads documents of 10^5 elements and more, where the reader above
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
