"""Job ids a repository that went back in time handed out again (docs/design.md §4,
"Restores and rebuilds").

A repository restored from a backup or rebuilt empty numbers the jobs made on it before
the next run from what it still holds: it may give a job an id of its block that the
cluster already gave another one. The run that finds it went back, before anything is
exchanged, asks its partners (the parent for a child; every child for the parent) what
they hold of its block, and moves the jobs it made since it went back whose id a
partner holds for another job past the highest id any partner has seen there, on that
repository, with an activity record. A job a partner holds under the same id (made
before the backup and synchronized since) keeps it.

Replicas without these operations (stock servers) are not asked: their jobs meet a
taken id the way any arriving job does (renumbered where it arrives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from .errors import WMSyncError
from .replica import Replica

__all__ = ["BlockView", "candidates", "clashing", "look", "move"]


@dataclass
class BlockView:
    """What the partners asked hold of one job id block."""

    highest: Optional[int] = None  # the highest id any of them holds there
    held: Dict[int, Set[str]] = field(default_factory=dict)  # id -> GUIDs held at it

    def add(self, highest: Optional[int], held: Dict[int, str]) -> None:
        if highest is not None and (self.highest is None or highest > self.highest):
            self.highest = highest
        for job_id, guid in held.items():
            self.held.setdefault(job_id, set()).add(guid)


def candidates(
    replica: Replica, name: str, start: int, size: int, high: int, since_gen: int
) -> Optional[List[Dict[str, Any]]]:
    """The jobs *replica* (named *name*) made after *since_gen* with ids in its block up
    to *high* (a dry run: nothing changes); ``None`` when it cannot renumber them."""
    ask = getattr(replica, "renumber_reused_jobs", None)
    if ask is None:
        return None
    found: List[Dict[str, Any]] = ask(name, start, size, high, since_gen, dry_run=True)
    return found


def look(
    partners: List[Replica],
    start: int,
    size: int,
    ids: List[int],
    trouble: Callable[[Replica, WMSyncError], None],
) -> BlockView:
    """Ask each partner what it holds of the block; one that cannot answer is reported
    to *trouble* and left out."""
    view = BlockView()
    for partner in partners:
        ask = getattr(partner, "job_ids", None)
        if ask is None:
            continue
        try:
            view.add(*ask(start, size, ids))
        except WMSyncError as exc:
            trouble(partner, exc)
    return view


def clashing(found: List[Dict[str, Any]], view: BlockView) -> List[str]:
    """The GUIDs of the *found* jobs whose id a partner holds for another job."""
    return [
        str(job["guid"])
        for job in found
        if view.held.get(int(job["from"]), set()) - {str(job["guid"])}
    ]


def move(
    replica: Replica,
    name: str,
    start: int,
    size: int,
    high: int,
    since_gen: int,
    guids: List[str],
) -> List[Dict[str, Any]]:
    """Move the jobs *guids* past *high* on *replica*: ``[{"guid", "from", "to"}]``."""
    if not guids:
        return []
    moved: List[Dict[str, Any]] = replica.renumber_reused_jobs(  # type: ignore[attr-defined]
        name, start, size, high, since_gen, guids=guids
    )
    return moved
