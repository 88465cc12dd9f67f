"""Writing an exchange document as a stream (:func:`write_document`), and compressing
one for upload (:func:`gzip_file`)."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
from typing import IO, Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from lxml import etree

from ..errors import ExchangeFormatError
from ..model import FIELDS, KINDS, MAX_TEXT_CHARS, Element, vv_to_text
from .checks import attribute_rules, surely_valid
from .common import CHUNK, DELETED, NOTE, ROOT, ExchangeHeader, PathOrFile
from .elements import CONTENT_TOMBSTONES, ESCAPED_FLAG, UNWRITABLE, escape_text, schema_error
from .leftout import LeftOut
from .parsers import new_parser
from .schema import element_schema

#: The writer flushes its output after this many elements.
FLUSH_EVERY = 1000
_ALLOWED: Dict[str, FrozenSet[str]] = {kind: frozenset(FIELDS[kind]) for kind in KINDS}


def write_document(
    target: PathOrFile,
    header: ExchangeHeader,
    elements: Iterable[Element],
    *,
    left_out: Optional[List[LeftOut]] = None,
) -> int:
    """Write an exchange document, one element at a time, in the caller's order.

    Each element goes on a line of its own, so that a reader's errors name a useful line.
    A partly written file at *target* (a path) is removed when writing fails.

    Only what every reader accepts is written: an element with a text field longer than
    :data:`~wmsync.model.MAX_TEXT_CHARS`, or a value the schema refuses, cannot be
    written. Content text XML cannot hold (control characters, lone surrogates) is
    written escaped (see :mod:`.elements`).

    :param target: a path, or a binary file object (left open).
    :param header: the root's attributes.
    :param elements: the versions to write; ``None`` fields are left out.
    :param left_out: when given, an element that cannot be written is left out of the
        document and added here (:class:`~.leftout.LeftOut`, with why) instead of
        failing the whole document.
    :returns: the number of elements written.
    :raises ExchangeFormatError: without *left_out*, an element that cannot be written
        (unknown kind or field; a guid, vv or origin that XML cannot hold; too long; a
        value the schema refuses).
    """
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        with open(path, "wb") as stream:
            try:
                return _write(stream, header, elements, left_out)
            except BaseException:
                stream.close()
                with contextlib.suppress(OSError):
                    os.remove(path)
                raise
    return _write(target, header, elements, left_out)


def _write(
    stream: IO[bytes],
    header: ExchangeHeader,
    elements: Iterable[Element],
    left_out: Optional[List[LeftOut]],
) -> int:
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
        if left_out is None:
            chunk.append(_to_text(element))
        else:
            try:
                chunk.append(_to_text(element))
            except ExchangeFormatError as error:
                left_out.append(LeftOut.of(element, error.reason))
                continue
            except (TypeError, ValueError) as error:  # a stored value of the wrong type
                left_out.append(LeftOut.of(element, f"cannot write it: {error}"))
                continue
        count += 1
        if count % FLUSH_EVERY == 0:
            stream.write("".join(chunk).encode("utf-8"))
            chunk = []
    chunk.append(f"</{ROOT}>")
    stream.write("".join(chunk).encode("utf-8"))
    return count


# Characters that need escaping (XML 1.0 cannot hold some of them at all: those are
# written with escape_text, see .elements).
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NOT_XML_MESSAGE = (
    "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"
)
_vv_texts: Dict[Tuple[Tuple[str, int], ...], Tuple[str, bool]] = {}
_origins: Dict[str, bool] = {}
# Times and numbers this far from zero are surely a valid xs:long.
_SAFE_LONG = 10**18


class _Unwritable(Exception):
    """Content text XML cannot hold: the element is written again, escaped."""


def _escape_attr(value: str, kind: str, tag: str, guid: str = "") -> str:
    """*value* as an attribute value; a version attribute (guid, vv, origin) that XML
    cannot hold is refused."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    if UNWRITABLE.search(value) is not None:
        raise ExchangeFormatError(f"cannot write {kind} {guid}: {_NOT_XML_MESSAGE}", element=tag)
    return value.translate(_ATTR_ESCAPES)


def _content_attr(value: str) -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    if UNWRITABLE.search(value) is not None:
        raise _Unwritable
    return value.translate(_ATTR_ESCAPES)


def _vv_text(vv: Mapping[str, int], rules: Dict[str, Any]) -> Tuple[str, bool]:
    """``vv_to_text`` and whether the schema surely accepts it, remembered: most
    versions of a document share a few vectors."""
    key = tuple(sorted(vv.items()))
    known = _vv_texts.get(key)
    if known is None:
        if len(_vv_texts) > 10_000:
            _vv_texts.clear()
        text = vv_to_text(vv)
        known = _vv_texts[key] = (text, _sure(rules, "vv", text))
    return known


def _origin_sure(origin: str, rules: Dict[str, Any]) -> bool:
    """:func:`_sure` of an origin, remembered (a document has a few origins)."""
    sure = _origins.get(origin)
    if sure is None:
        if len(_origins) > 10_000:
            _origins.clear()
        sure = _origins[origin] = _sure(rules, "origin", origin)
    return sure


def _to_text(element: Element) -> str:
    """One element as a line of markup; content XML cannot hold is escaped.

    :raises ExchangeFormatError: it cannot be written (the reason names why).
    """
    try:
        text, certain = _element_text(element, False)
    except _Unwritable:
        text, certain = _element_text(element, True)
    if not certain:
        _validate(text, element)
    return text


def _validate(text: str, element: Element) -> None:
    """Check one written element against the schema, as every reader does."""
    node = etree.fromstring(text.encode("utf-8"), new_parser())
    schema = element_schema()
    if not schema.validate(node):
        raise ExchangeFormatError(schema_error(schema)[0], element=element.kind)


def _rules(tag: str) -> Dict[str, Any]:
    rules = _RULES.get(tag)
    if rules is None:
        rules = _RULES[tag] = attribute_rules(tag)
    return rules


_RULES: Dict[str, Dict[str, Any]] = {}


def _element_text(element: Element, escaped: bool) -> Tuple[str, bool]:
    """One element as a line of markup, its content escaped (with the flag) if
    *escaped*, and whether every value surely passes the schema (the compiled checks
    of :mod:`.checks`); raises :class:`_Unwritable` if it must be escaped and is not."""
    kind = element.kind
    if kind not in _ALLOWED:
        raise ExchangeFormatError(f"cannot write an element of unknown kind {kind!r}")
    guid = element.guid
    tag = DELETED if element.deleted else kind
    rules = _rules(tag)
    vv_text, certain = _vv_text(element.vv, rules)
    modified = int(element.modified)
    certain = (
        certain
        and -_SAFE_LONG < modified < _SAFE_LONG
        and _sure(rules, "guid", guid)
        and _origin_sure(element.origin, rules)
    )
    parts = [
        f'<{DELETED} kind="{kind}" guid="' if element.deleted else f'<{kind} guid="',
        _escape_attr(guid, kind, tag, guid),
    ]
    if element.local_id is not None:
        local_id = int(element.local_id)
        certain = certain and local_id >= 1
        parts.append(f'" id="{local_id}')
    parts.append(
        f'" vv="{_escape_attr(vv_text, kind, tag, guid)}'
        f'" modified="{modified}'
        f'" origin="{_escape_attr(element.origin, kind, tag, guid)}"'
    )
    if escaped:
        parts.append(f' {ESCAPED_FLAG}="1"')
    note: Optional[str] = None
    # A tombstone has no content, except a hold or activity record deleted with its
    # job, which keeps it (docs/design.md §4).
    if not element.deleted or element.fields:
        fields = element.fields
        if element.deleted and kind not in CONTENT_TOMBSTONES:
            raise ExchangeFormatError(
                f"cannot write {kind} {guid}: a tombstone of a {kind} has no content",
                element=kind,
            )
        if not _ALLOWED[kind].issuperset(fields):
            unknown = set(fields) - _ALLOWED[kind]
            raise ExchangeFormatError(
                f"cannot write {kind} {guid}: unknown field(s) " + ", ".join(sorted(unknown)),
                element=kind,
            )
        known = _ATTRIBUTES.setdefault(tag, {})
        for name, rule in _field_rules(kind, rules):
            value = fields.get(name)
            if value is None:
                continue
            if not escaped:  # most values repeat (users, states, types): written once
                written = known.get((name, value))
                if written is not None:
                    parts.append(written[0])
                    certain = certain and written[1]
                    continue
            text = str(value)
            if len(text) > MAX_TEXT_CHARS:
                raise ExchangeFormatError(
                    f"its {name} holds {len(text)} characters, more than the "
                    f"{MAX_TEXT_CHARS} the exchange carries",
                    element=kind,
                )
            if escaped:
                text = escape_text(text)
            if name == "notes":
                note = text
            else:
                attribute = f' {name}="{_content_attr(text)}"'
                sure = _value_sure(rule, text)
                parts.append(attribute)
                certain = certain and sure
                if (
                    not escaped
                    and type(value) is str
                    and len(value) <= _ATTRIBUTE_CHARS_KEPT
                    and len(known) < _ATTRIBUTES_KEPT
                ):
                    known[(name, value)] = (attribute, sure)
    if note is None:
        parts.append("/>\n")
    else:
        if _TEXT_SPECIAL.search(note) is not None:
            if UNWRITABLE.search(note) is not None:
                raise _Unwritable
            note = note.translate(_TEXT_ESCAPES)
        parts.append(f"><{NOTE}>{note}</{NOTE}></{kind}>\n")
    return "".join(parts), certain


_UNKNOWN: Any = object()  # an attribute the compiled checks do not know
# Per tag, (field, value) -> (the attribute as written, whether the checks vouch for it).
_ATTRIBUTES: Dict[str, Dict[Tuple[str, str], Tuple[str, bool]]] = {}
_ATTRIBUTES_KEPT = 20_000  # per tag; values past it are written the long way
_ATTRIBUTE_CHARS_KEPT = 200  # longer values (descriptions) rarely repeat: not kept


def _value_sure(rule: Any, text: str) -> bool:
    """The compiled checks vouch for *text* under *rule* (``None``: any text)."""
    if rule is None:
        return True
    if rule is _UNKNOWN:
        return False
    # Most values are digits: checked first.
    if rule.digits and text.isdigit() and text.isascii() and len(text) < 19:
        sure = True
    else:
        sure = rule.match(text) is not None
    return sure and (rule.low is None or int(text) >= rule.low)


_FIELD_RULES: Dict[str, List[Tuple[str, Any]]] = {}


def _field_rules(kind: str, rules: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """The content fields of *kind* in document order, each with its compiled rule."""
    found = _FIELD_RULES.get(kind)
    if found is None:
        found = _FIELD_RULES[kind] = [(name, rules.get(name, _UNKNOWN)) for name in FIELDS[kind]]
    return found


def _sure(rules: Dict[str, Any], name: str, value: str) -> bool:
    """The compiled checks vouch for *value* as attribute *name* (else the schema decides)."""
    rule = rules.get(name, _UNKNOWN)
    return rule is not _UNKNOWN and surely_valid(rule, value)


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
            shutil.copyfileobj(src, packed, CHUNK)
        return raw.tell()
