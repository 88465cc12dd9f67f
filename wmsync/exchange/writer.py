"""Writing an exchange document as a stream (:func:`write_document`), and compressing
one for upload (:func:`gzip_file`)."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
from typing import IO, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from ..errors import ExchangeFormatError
from ..model import FIELDS, KINDS, Element, vv_to_text
from .common import CHUNK, DELETED, NOTE, ROOT, ExchangeHeader, PathOrFile
from .elements import CONTENT_TOMBSTONES, ESCAPED_FLAG, UNWRITABLE, escape_text

#: The writer flushes its output after this many elements.
FLUSH_EVERY = 1000
_ALLOWED: Dict[str, FrozenSet[str]] = {kind: frozenset(FIELDS[kind]) for kind in KINDS}


def write_document(target: PathOrFile, header: ExchangeHeader, elements: Iterable[Element]) -> int:
    """Write an exchange document, one element at a time, in the caller's order.

    Each element goes on a line of its own, so that a reader's errors name a useful line.
    A partly written file at *target* (a path) is removed when writing fails.

    :param target: a path, or a binary file object (left open).
    :param header: the root's attributes.
    :param elements: the versions to write; ``None`` fields are left out.
    :returns: the number of elements written.
    :raises ExchangeFormatError: an element that cannot be written (unknown kind or
        field; a guid, vv or origin that XML cannot hold). Content text XML cannot hold
        (control characters, lone surrogates) is written escaped (see :mod:`.elements`).
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
_vv_texts: Dict[Tuple[Tuple[str, int], ...], str] = {}


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
    """One element as a line of markup; content XML cannot hold is escaped."""
    try:
        return _element_text(element, False)
    except _Unwritable:
        return _element_text(element, True)


def _element_text(element: Element, escaped: bool) -> str:
    """One element as a line of markup, its content escaped (with the flag) if
    *escaped*; raises :class:`_Unwritable` if it must be and is not."""
    kind = element.kind
    if kind not in _ALLOWED:
        raise ExchangeFormatError(f"cannot write an element of unknown kind {kind!r}")
    guid = element.guid
    tag = DELETED if element.deleted else kind
    parts = [
        f'<{DELETED} kind="{kind}" guid="' if element.deleted else f'<{kind} guid="',
        _escape_attr(guid, kind, tag, guid),
    ]
    if element.local_id is not None:
        parts.append(f'" id="{int(element.local_id)}')
    parts.append(
        f'" vv="{_escape_attr(_vv_text(element.vv), kind, tag, guid)}'
        f'" modified="{int(element.modified)}'
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
        for name in FIELDS[kind]:
            value = fields.get(name)
            if value is None:
                continue
            text = escape_text(str(value)) if escaped else str(value)
            if name == "notes":
                note = text
            else:
                parts.append(f' {name}="{_content_attr(text)}"')
    if note is None:
        parts.append("/>\n")
    else:
        if _TEXT_SPECIAL.search(note) is not None:
            if UNWRITABLE.search(note) is not None:
                raise _Unwritable
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
            shutil.copyfileobj(src, packed, CHUNK)
        return raw.tell()
