"""Elements that cannot travel (docs/design.md §4, "What the exchange carries").

One element that cannot travel never stops the others: the writer leaves it out of the
document and lists it as a :class:`LeftOut` (the export answer's ``skipped``,
docs/protocol.md), and a document a receiving server refused because of one element can
be written again without it (:func:`without_element`). Whoever leaves an element out
keeps the direction's watermark where it was, so that the next run retries it.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from ..model import Element
from .common import ExchangeHeader
from .reader import read_document

_NAME_FIELD = {"User": "userName"}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: A name shown in a message is cut to this many characters.
_NAME_SHOWN = 80
#: A reason is cut to this many characters (a schema message quotes the bad value).
WHY_LIMIT = 300


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class LeftOut:
    """One element left out of a document: what it is, and why it cannot travel."""

    kind: str
    guid: str
    local_id: Optional[int]
    name: str
    why: str

    @classmethod
    def of(cls, element: Element, why: str) -> LeftOut:
        name = "" if element.deleted else element.fields.get(_NAME_FIELD.get(element.kind, "name"))
        return cls(
            element.kind,
            element.guid,
            element.local_id,
            _cut(str(name or ""), _NAME_SHOWN),
            _cut(why, WHY_LIMIT),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The entry of an export answer's ``skipped`` list."""
        return {
            "kind": self.kind,
            "guid": self.guid,
            "id": self.local_id,
            "name": self.name,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeftOut:
        """An entry of a ``skipped`` list, read leniently (missing keys are empty)."""
        local_id = data.get("id")
        return cls(
            str(data.get("kind") or ""),
            str(data.get("guid") or ""),
            local_id if isinstance(local_id, int) and not isinstance(local_id, bool) else None,
            _cut(str(data.get("name") or ""), _NAME_SHOWN),
            _cut(str(data.get("why") or "unknown reason"), WHY_LIMIT),
        )

    def describe(self) -> str:
        """``Job 12 "Survey" (guid): why``, for messages."""
        text = self.kind or "element"
        if self.local_id is not None:
            text += f" {self.local_id}"
        if self.name:
            text += f" {self.name!r}"
        return f"{text} ({self.guid}): {self.why}"


def describe_all(left_out: List[LeftOut]) -> str:
    """The message of a direction that left elements out."""
    count = len(left_out)
    noun = "element" if count == 1 else "elements"
    return (
        f"{count} {noun} could not travel and {'was' if count == 1 else 'were'} left out "
        "(everything else was sent; the next run retries "
        f"{'it' if count == 1 else 'them'}): " + "; ".join(e.describe() for e in left_out)
    )


def guid_named(text: str) -> Optional[str]:
    """The one GUID a message names (lower case), or ``None`` (none, or several)."""
    found = {match.lower() for match in _GUID.findall(text)}
    return found.pop() if len(found) == 1 else None


def _with_lines(path: str) -> Tuple[ExchangeHeader, Iterator[Tuple[int, Element]]]:
    reader = read_document(path)

    def items() -> Iterator[Tuple[int, Element]]:
        with reader:
            for element in reader:
                yield reader.line or 0, element

    return reader.header, items()


def find_element(path: str, *, line: Optional[int] = None, guid: Optional[str] = None) -> int:
    """The position (0-based) of the element of the document at *path* that starts at or
    spans *line* (every element starts on a line of its own), or has *guid*; -1 for none.

    :raises ExchangeFormatError: the document is not valid.
    """
    _, items = _with_lines(path)
    found = -1
    for index, (start, element) in enumerate(items):
        if guid is not None:
            if element.guid.lower() == guid.lower():
                found = index
        elif line is not None and start <= line:
            found = index  # the last element starting at or before the line
    return found


def without_element(path: str, index: int, workdir: str, *, packed: bool) -> Tuple[str, Element]:
    """A copy of the document at *path* without its element number *index*.

    :param packed: write the copy gzip-compressed.
    :returns: the copy's path (the caller removes it) and the element left out.
    :raises ExchangeFormatError: the document is not valid.
    """
    header, items = _with_lines(path)
    removed: List[Element] = []

    def kept() -> Iterator[Element]:
        for position, (_, element) in enumerate(items):
            if position == index:
                removed.append(element)
            else:
                yield element

    from .writer import gzip_file, write_document  # the writer imports this module

    fd, copy = tempfile.mkstemp(suffix=".jxl", dir=workdir)
    os.close(fd)
    try:
        write_document(copy, header, kept())
        if not removed:
            raise IndexError(f"the document has no element number {index}")
        if packed:
            gzip_file(copy, copy + ".gz", compresslevel=1)
            os.replace(copy + ".gz", copy)
    except BaseException:
        for leftover in (copy, copy + ".gz"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return copy, removed[0]
