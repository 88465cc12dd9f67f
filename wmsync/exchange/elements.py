"""From parsed markup to values: the one header reader (:func:`read_header`) and the one
element builder (:func:`to_record`, :func:`to_element`) every reader uses, and the
escaping of text XML 1.0 cannot hold (:func:`escape_text`, :func:`unescape_text`).

Text that cannot travel as it is (control characters such as U+000B, lone surrogates,
U+FFFE/U+FFFF) is written as ``U+E000`` followed by the character's code in four
upper-case hex digits, and the element gets ``escaped="1"``. In such an element every
``U+E000`` of the text is written escaped too (``\\ue000E000``), so a reader undoes exactly
what the writer did, and text that merely looks like an escape comes back as it was.
Elements without the flag are read as they are (documents of older writers included).
"""

from __future__ import annotations

import re
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from lxml import etree

from ..errors import ExchangeFormatError
from ..model import FIELDS, Element, vv_from_text
from .common import DELETED, ROOT, VERSION, ExchangeHeader
from .schema import element_schema

#: The attribute that marks an element whose content fields are escaped.
ESCAPED_FLAG = "escaped"
#: The character that starts an escape (in a flagged element only).
ESCAPE = "\ue000"

#: Characters XML 1.0 cannot hold (lxml refuses them too).
UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What a flagged element escapes: those, and the escape character itself.
_ESCAPABLE = [
    *range(0x00, 0x09),
    0x0B,
    0x0C,
    *range(0x0E, 0x20),
    *range(0xD800, 0xE000),
    0xE000,
    0xFFFE,
    0xFFFF,
]
_ESCAPES = {code: f"{ESCAPE}{code:04X}" for code in _ESCAPABLE}  # for str.translate
_UNESCAPES = {f"{code:04X}": chr(code) for code in _ESCAPABLE}

#: The kinds whose tombstones may keep their content (deleted with their job,
#: docs/design.md §4), and the fields they may keep.
CONTENT_TOMBSTONES: Dict[str, FrozenSet[str]] = {
    kind: frozenset(FIELDS[kind]) for kind in ("Hold", "Activity")
}

#: One element as the readers build it: ``(kind, guid, local_id, vv text, modified,
#: origin, deleted, fields)``; ``fields`` holds the content fields (with ``notes`` from
#: a <Note> child); a tombstone has none, except one of :data:`CONTENT_TOMBSTONES`.
Record = Tuple[str, str, Optional[int], str, int, str, bool, Dict[str, str]]


def escape_text(value: str) -> str:
    """*value* with every unwritable character and every ``U+E000`` escaped."""
    return value.translate(_ESCAPES)


def unescape_text(value: str) -> str:
    """Undo :func:`escape_text`.

    :raises ValueError: an escape that :func:`escape_text` does not write.
    """
    if ESCAPE not in value:
        return value
    first, *escaped = value.split(ESCAPE)
    try:
        return first + "".join([_UNESCAPES[part[:4]] + part[4:] for part in escaped])
    except KeyError:
        raise ValueError(
            "U+E000 in escaped text not followed by the code of an escaped character"
        ) from None


def schema_error(schema: etree.XMLSchema) -> Tuple[str, Optional[int]]:
    """The message and line of *schema*'s last validation error."""
    # lxml-stubs leave out _ErrorLog.last_error and type its entries loosely.
    entry: Any = getattr(schema.error_log, "last_error", None)
    if entry is None:
        return "invalid element", None
    return str(entry.message), (int(entry.line) or None)


def read_header(tag: str, attrib: Mapping[str, str], line: Optional[int] = None) -> ExchangeHeader:
    """The document's header from its root start tag.

    :raises ExchangeFormatError: not our root, another version, or attributes the schema
        refuses (named at *line*).
    """
    if tag != ROOT:
        raise ExchangeFormatError(
            f"not a job exchange document: the root element is <{tag}>", line, tag
        )
    version = attrib.get("version")
    if version is not None and version != VERSION:
        raise ExchangeFormatError(
            f"unsupported document version {version!r} (this reader reads {VERSION!r})",
            line,
            tag,
        )
    schema = element_schema()
    if not schema.validate(etree.Element(ROOT, dict(attrib))):
        raise ExchangeFormatError(schema_error(schema)[0], line, tag)
    return ExchangeHeader(
        repository=attrib.get("repository", ""),
        generation=int(attrib.get("generation", "0")),
        since_gen=int(attrib.get("sinceGen", "0")),
        export_time=int(attrib.get("exportTime", "0")),
        version=VERSION,
    )


def to_record(tag: str, attrib: Dict[str, str], note: Optional[str]) -> Record:
    """One child of the root, already validated, as a :data:`Record` (*attrib* is
    consumed; *note* is the text of its <Note>, ``None`` without one).

    :raises ValueError: broken escaped text.
    """
    guid = attrib.pop("guid")
    local_id = attrib.pop("id", None)
    vv = attrib.pop("vv")
    modified = int(attrib.pop("modified"))
    origin = attrib.pop("origin")
    escaped = attrib.pop(ESCAPED_FLAG, None)
    number = None if local_id is None else int(local_id)
    if tag == DELETED:
        kind = attrib.pop("kind")
        if attrib:  # a hold or activity record deleted with its job keeps its content
            if kind not in CONTENT_TOMBSTONES or not CONTENT_TOMBSTONES[kind].issuperset(attrib):
                unknown = sorted(set(attrib) - CONTENT_TOMBSTONES.get(kind, frozenset()))
                raise ValueError(f"a tombstone of a {kind} carries no field " + ", ".join(unknown))
            if escaped is not None:
                attrib = {name: unescape_text(value) for name, value in attrib.items()}
        return (kind, guid, number, vv, modified, origin, True, attrib)
    if note is not None:
        attrib["notes"] = note
    if escaped is not None:
        attrib = {name: unescape_text(value) for name, value in attrib.items()}
    return (tag, guid, number, vv, modified, origin, False, attrib)


def to_element(record: Record, vv: Optional[Mapping[str, int]] = None) -> Element:
    """The :class:`Element` of a record (*vv*: its vector, when already read).

    :raises ValueError: the record's vv text is not a version vector.
    """
    kind, guid, local_id, vv_text, modified, origin, deleted, fields = record
    return Element(
        kind=kind,
        guid=guid,
        vv=vv_from_text(vv_text) if vv is None else dict(vv),
        modified=modified,
        origin=origin,
        fields=fields,
        deleted=deleted,
        local_id=local_id,
    )
