"""The merge rule for one element (docs/design.md §4), as pure functions.

:func:`decide` compares the version a repository holds with an incoming version of the
same GUID and says what to store. It knows nothing of SQLite, ids or generations, so the
rule can be tested as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from wmsync.model import (
    CONCURRENT,
    EQUAL,
    NEWER,
    Element,
    compare_vv,
    conflict_winner,
    merge_vv,
)

ADD = "add"  # unknown GUID: store the incoming version as it is
UNCHANGED = "unchanged"  # same version, or the incoming one is older
REPLACE = "replace"  # the incoming version supersedes the local one
MERGE = "merge"  # concurrent versions with the same content: store the merged vv
CONFLICT = "conflict"  # concurrent (or same vv, other content): the winner, merged vv

REASON_CONCURRENT = "concurrent edits"
REASON_SAME_VERSION = "same version, different content"


@dataclass(frozen=True)
class Decision:
    """What to do with one incoming version.

    ``result`` is the version to store (``None`` when nothing changes); ``local`` tells
    whether it is stored as a local version (empty ``via``: a conflict resolution or a
    merged vv, which must travel on) or as imported (``via`` = the sender). ``loser`` and
    ``reason`` are set for a conflict.
    """

    action: str
    result: Optional[Element] = None
    local: bool = False
    loser: Optional[Element] = None
    winner: Optional[Element] = None
    reason: str = ""


def _resolved(winner: Element, vv: Mapping[str, int]) -> Element:
    """The winner's content, ``modified`` and ``origin`` with the merged version vector."""
    return Element(
        kind=winner.kind,
        guid=winner.guid,
        vv=dict(vv),
        modified=winner.modified,
        origin=winner.origin,
        fields=dict(winner.fields),
        deleted=winner.deleted,
        local_id=winner.local_id,
    )


def decide(local: Optional[Element], incoming: Element) -> Decision:
    """Apply the merge rule to one element.

    :param local: the version this repository holds (a tombstone counts), or ``None``.
    :param incoming: the version that arrives.
    """
    if local is None:
        return Decision(ADD, result=incoming)
    order = compare_vv(incoming.vv, local.vv)
    same = incoming.same_content(local)
    if order == NEWER:
        return Decision(REPLACE, result=incoming)
    if order == EQUAL and same:
        return Decision(UNCHANGED)
    if order not in (EQUAL, CONCURRENT):  # older
        return Decision(UNCHANGED)
    merged = merge_vv(local.vv, incoming.vv)
    winner = conflict_winner(local, incoming)
    loser = incoming if winner is local else local
    if same:
        # Concurrent versions that agree: no conflict to log, but the merged vv must
        # be stored (and travel on) so that it supersedes both.
        return Decision(MERGE, result=_resolved(winner, merged), local=True)
    reason = REASON_CONCURRENT if order == CONCURRENT else REASON_SAME_VERSION
    return Decision(
        CONFLICT,
        result=_resolved(winner, merged),
        local=True,
        loser=loser,
        winner=winner,
        reason=reason,
    )


def created_key(element: Element) -> Tuple[int, str]:
    """Sort key for "which job type was created first": ``created`` ms, then GUID."""
    text = element.fields.get("created", "")
    try:
        created = int(text)
    except ValueError:
        created = 0
    return (created, element.guid)


def plan_renames(
    same_name: Sequence[Element], names_in_use: Sequence[str]
) -> List[Tuple[Element, str]]:
    """Names for job types that share one name: the first created keeps it.

    :param same_name: live job types (different GUIDs) with the same ``name``.
    :param names_in_use: every live job type name in the repository.
    :returns: ``(element, new name)`` for each one that must be renamed, ``Name_1``,
        ``Name_2``, ... skipping names already in use.
    """
    ordered = sorted(same_name, key=created_key)
    if len(ordered) < 2:
        return []
    base = ordered[0].fields.get("name", "")
    taken = set(names_in_use)
    renames: List[Tuple[Element, str]] = []
    suffix = 0
    for element in ordered[1:]:
        suffix += 1
        while f"{base}_{suffix}" in taken:
            suffix += 1
        new_name = f"{base}_{suffix}"
        taken.add(new_name)
        renames.append((element, new_name))
    return renames


def with_fields(element: Element, fields: Dict[str, str]) -> Element:
    """A copy of *element* with other content fields (same version)."""
    return Element(
        kind=element.kind,
        guid=element.guid,
        vv=dict(element.vv),
        modified=element.modified,
        origin=element.origin,
        fields=fields,
        deleted=element.deleted,
        local_id=element.local_id,
    )
