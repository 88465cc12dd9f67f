"""Results of a run: per-child outcome, the status code, text and JSON reports.

Counts are seen from the child: ``sent`` is what the child sent to the parent (pull),
``received`` what it received from the parent (push).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import valuetable
from .errors import redact_url
from .valuetable import ChildSpec

SYNCHRONIZED, FAILED, SKIPPED = "synchronized", "failed", "skipped"
PLANNED = "planned"  # a plan entry: what a run would move (nothing was moved)


@dataclass
class ChildResult:
    """What happened to one child of the table."""

    spec: ChildSpec
    state: str = FAILED
    sent: int = 0
    received: int = 0
    conflicts: int = 0
    renumbered: int = 0
    error: Optional[str] = None
    last_sync: Optional[datetime] = None  # the new Last Synchronized time (aware)
    #: every id this run changed, old -> new: the child's own jobs moved into its block
    #: when it joined, and elements an import could not keep the id of; each
    #: ``{"repository", "kind", "guid", "from", "to"}`` (``renumbered`` counts them)
    renumbered_ids: List[Dict[str, Any]] = field(default_factory=list)
    full_exchange: bool = False
    repository: Optional[str] = None  # the server's own spelling of the name, once read
    kind: Optional[str] = None  # "stock" or "extensions", once read (docs/design.md §10)

    @property
    def name(self) -> str:
        """The repository's own name once its server was read, else the row's."""
        return self.repository or self.spec.name

    @property
    def url(self) -> str:
        return redact_url(self.spec.url)

    def add_renumbered(self, repository: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Record ids *repository* changed (``{"guid", "from", "to"}``, jobs unless a
        ``kind`` says otherwise) and count them."""
        for entry in entries:
            self.renumbered_ids.append(
                {
                    "repository": repository,
                    "kind": entry.get("kind") or "Job",
                    "guid": entry.get("guid"),
                    "from": entry.get("from"),
                    "to": entry.get("to"),
                }
            )
        self.renumbered += len(entries)

    def output_row(self) -> List[str]:
        """The child's Last Synchronized row: a failed or skipped child keeps its time."""
        new_time = self.last_sync if self.state == SYNCHRONIZED else None
        return valuetable.output_row(replace(self.spec, name=self.name), new_time)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state,
            "sent": self.sent,
            "received": self.received,
            "conflicts": self.conflicts,
            "renumbered": self.renumbered,
            "renumbered_ids": [dict(entry) for entry in self.renumbered_ids],
            "full_exchange": self.full_exchange,
            "kind": self.kind,
            "error": self.error,
            "last_sync_time": self.output_row()[3],
        }


@dataclass
class SyncResult:
    """The outcome of :func:`wmsync.synchronize`.

    ``status``: 0 every connected child synchronized; N > 0 that many connected children
    failed; -1 nothing could be done (``error`` says why).
    """

    status: int
    parent_name: str
    parent_url: str
    started: datetime
    finished: datetime
    children: List[ChildResult] = field(default_factory=list)
    conflicts: List[Dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None
    cancelled: bool = False
    #: warnings of the run that concern no single step (stock servers' missing
    #: configuration, refused id blocks) and the import answers' warnings
    warnings: List[str] = field(default_factory=list)
    parent_kind: Optional[str] = None  # "stock" or "extensions", once read

    @property
    def last_sync_rows(self) -> List[List[str]]:
        """The Last Synchronized table: four text columns per input row, in input order."""
        return [child.output_row() for child in self.children]

    @property
    def last_sync_text(self) -> str:
        """The Last Synchronized table as value-table text (feeds the next run)."""
        return valuetable.format_rows(self.last_sync_rows)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status,
            "parent": {
                "name": self.parent_name,
                "url": redact_url(self.parent_url),
                "kind": self.parent_kind,
            },
            "started": _iso_utc(self.started),
            "finished": _iso_utc(self.finished),
            "error": self.error,
            "cancelled": self.cancelled,
            "children": [child.to_dict() for child in self.children],
            "conflicts": self.conflicts,
            "warnings": self.warnings,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary_lines(self) -> List[str]:
        """One line per child and a closing status line, for people."""
        lines = [child_line(child) for child in self.children]
        lines.extend(conflict_line(conflict) for conflict in self.conflicts)
        if self.error:
            lines.append(f"error: {self.error}")
        connected = sum(1 for child in self.children if child.state != SKIPPED)
        lines.append(f"status {self.status}: {status_meaning(self.status, connected)}")
        return lines


def conflict_line(conflict: Mapping[str, Any]) -> str:
    """One conflict for people: where it was decided, which element (job id and name
    rather than a GUID where known), who won, whose version lost, the fields that differ."""
    kind = conflict.get("kind") or "element"
    what = f"{kind} {conflict['id']}" if conflict.get("id") is not None else str(kind)
    if conflict.get("name"):
        what += f" {conflict['name']!r}"
    if conflict.get("id") is None and conflict.get("guid"):
        what += f" ({conflict['guid']})"
    fields = conflict.get("fields") or []
    differ = f"; fields that differ: {', '.join(map(str, fields))}" if fields else ""
    return (
        f"conflict on {conflict.get('repository')}: {what}: kept the version from "
        f"{conflict.get('winner')}, the one from {conflict.get('loser_origin')} is in the "
        f"conflict log{differ}"
    )


@dataclass
class PlanEntry:
    """What a run would move for one child (``wmsync plan``)."""

    spec: ChildSpec
    state: str = SKIPPED  # PLANNED, FAILED (cannot plan) or SKIPPED (not connected)
    pull: int = 0  # exact: the child's export that the pull would send
    #: the parent's own changes for this child plus what the other pulls would bring
    #: (an estimate: an element changed on two children counts twice)
    push_estimate: int = 0
    full_exchange: bool = False
    error: Optional[str] = None
    repository: Optional[str] = None  # the server's own spelling of the name, once read
    kind: Optional[str] = None  # "stock" or "extensions", once read
    #: the child's own jobs a run would move into its block as it joins
    #: (``{"guid", "from", "to"}``, docs/design.md §4)
    renumber: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.repository or self.spec.name

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "url": redact_url(self.spec.url),
            "state": self.state,
            "pull": self.pull,
            "push_estimate": self.push_estimate,
            "full_exchange": self.full_exchange,
            "renumber": [dict(entry) for entry in self.renumber],
            "kind": self.kind,
            "error": self.error,
        }


@dataclass
class PlanResult:
    """The outcome of :func:`wmsync.planning.plan`: nothing was changed."""

    status: int
    parent_name: str
    parent_url: str
    children: List[PlanEntry] = field(default_factory=list)
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)  # stock servers' scans
    parent_kind: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status,
            "dry_run": True,
            "parent": {
                "name": self.parent_name,
                "url": redact_url(self.parent_url),
                "kind": self.parent_kind,
            },
            "error": self.error,
            "children": [entry.to_dict() for entry in self.children],
            "warnings": self.warnings,
        }

    def summary_lines(self) -> List[str]:
        lines = []
        for entry in self.children:
            if entry.state == FAILED:
                lines.append(f"{entry.name}: cannot plan: {entry.error}")
            elif entry.state == SKIPPED:
                lines.append(f"{entry.name}: skipped ({entry.error})")
            else:
                kind = "full exchange" if entry.full_exchange else "incremental"
                lines.append(
                    f"{entry.name}: {kind}; pull would send {entry.pull} element(s), "
                    f"push would send about {entry.push_estimate}"
                    + (" (stock server)" if entry.kind == "stock" else "")
                    + (
                        f"; would renumber {len(entry.renumber)} job(s) as it joins: "
                        + id_changes(entry.renumber)
                        if entry.renumber
                        else ""
                    )
                )
        if self.error:
            lines.append(f"error: {self.error}")
        lines.append(f"dry run, nothing changed (status {self.status})")
        return lines


def child_line(child: ChildResult) -> str:
    """A one-line account of one child."""
    if child.state == SKIPPED:
        return f"{child.name}: skipped ({child.error})"
    if child.state == FAILED:
        return f"{child.name}: FAILED: {child.error}"
    text = (
        f"{child.name}: synchronized; sent {child.sent}, received {child.received}, "
        f"conflicts {child.conflicts}"
    )
    if child.renumbered:
        text += f", renumbered {child.renumbered}"
        if child.renumbered_ids:
            text += f" ({renumbered_text(child.renumbered_ids)})"
    if child.full_exchange:
        text += " (full exchange)"
    if child.kind == "stock":
        text += " (stock server)"
    return text


#: How many id changes a text line spells out; the JSON report lists them all.
SHOWN_ID_CHANGES = 5


def id_changes(entries: Sequence[Mapping[str, Any]], limit: int = SHOWN_ID_CHANGES) -> str:
    """``12 -> 1000001, 13 -> 1000002`` for the first *limit* entries, then how many more."""
    shown = ", ".join(f"{e.get('from')} -> {e.get('to')}" for e in entries[:limit])
    rest = len(entries) - limit
    return shown + (f" and {rest} more" if rest > 0 else "")


def renumbered_text(entries: Sequence[Mapping[str, Any]], limit: int = SHOWN_ID_CHANGES) -> str:
    """Id changes per repository: ``on Ohio: job 12 -> 1000001; on Parent: hold 3 -> 4``,
    the first *limit* of them."""
    parts: List[str] = []
    for entry in entries[:limit]:
        kind = str(entry.get("kind") or "Job").lower()
        where = f"on {entry.get('repository')}: "
        change = f"{kind} {entry.get('from')} -> {entry.get('to')}"
        if parts and parts[-1].startswith(where):
            parts[-1] += f", {change}"
        else:
            parts.append(where + change)
    rest = len(entries) - limit
    return "; ".join(parts) + (f"; and {rest} more" if rest > 0 else "")


def status_meaning(status: int, connected: Optional[int] = None) -> str:
    """What a status code says, in words.

    :param connected: how many connected children the run had, when known: then the
        words say how many of them synchronized, and never speak of others that are
        not there.
    """
    if status == 0:
        return "every connected child synchronized"
    if status < 0:
        return "nothing could be done"
    failed = f"{status} connected {_children(status)} failed"
    if connected is None:
        return failed
    others = connected - status
    if others <= 0:
        return "the connected child failed" if status == 1 else f"all {failed}"
    return f"{status} of {connected} connected children failed; " + (
        "the other one synchronized" if others == 1 else f"the other {others} synchronized"
    )


def _children(count: int) -> str:
    return "child" if count == 1 else "children"


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
