"""Results of a run: per-child outcome, the status code, text and JSON reports.

Counts are seen from the child: ``sent`` is what the child sent to the parent (pull),
``received`` what it received from the parent (push).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from . import valuetable
from .errors import redact_url
from .valuetable import ChildSpec

SYNCHRONIZED, FAILED, SKIPPED = "synchronized", "failed", "skipped"


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
    full_exchange: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return redact_url(self.spec.url)

    def output_row(self) -> List[str]:
        """The child's Last Synchronized row: a failed or skipped child keeps its time."""
        new_time = self.last_sync if self.state == SYNCHRONIZED else None
        return valuetable.output_row(self.spec, new_time)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state,
            "sent": self.sent,
            "received": self.received,
            "conflicts": self.conflicts,
            "renumbered": self.renumbered,
            "full_exchange": self.full_exchange,
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
            "parent": {"name": self.parent_name, "url": redact_url(self.parent_url)},
            "started": _iso_utc(self.started),
            "finished": _iso_utc(self.finished),
            "error": self.error,
            "cancelled": self.cancelled,
            "children": [child.to_dict() for child in self.children],
            "conflicts": self.conflicts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def summary_lines(self) -> List[str]:
        """One line per child and a closing status line, for people."""
        lines = [child_line(child) for child in self.children]
        if self.error:
            lines.append(f"error: {self.error}")
        lines.append(f"status {self.status}: {status_meaning(self.status)}")
        return lines


@dataclass
class PlanEntry:
    """What a run would move for one child (``wmsync plan``)."""

    spec: ChildSpec
    state: str = SKIPPED
    pull: int = 0  # exact: the child's export that the pull would send
    push_estimate: int = 0  # the parent's changes today; the pulls may bring more
    full_exchange: bool = False
    error: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.spec.name,
            "url": redact_url(self.spec.url),
            "state": self.state,
            "pull": self.pull,
            "push_estimate": self.push_estimate,
            "full_exchange": self.full_exchange,
            "error": self.error,
        }


@dataclass
class PlanResult:
    """The outcome of :func:`wmsync.engine.plan`: nothing was changed."""

    status: int
    parent_name: str
    parent_url: str
    children: List[PlanEntry] = field(default_factory=list)
    error: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status,
            "dry_run": True,
            "parent": {"name": self.parent_name, "url": redact_url(self.parent_url)},
            "error": self.error,
            "children": [entry.to_dict() for entry in self.children],
        }

    def summary_lines(self) -> List[str]:
        lines = []
        for entry in self.children:
            if entry.state == FAILED:
                lines.append(f"{entry.spec.name}: cannot plan: {entry.error}")
            elif entry.state == SKIPPED:
                lines.append(f"{entry.spec.name}: skipped ({entry.error})")
            else:
                kind = "full exchange" if entry.full_exchange else "incremental"
                lines.append(
                    f"{entry.spec.name}: {kind}; pull would send {entry.pull} element(s), "
                    f"push would send about {entry.push_estimate}"
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
    if child.full_exchange:
        text += " (full exchange)"
    return text


def status_meaning(status: int) -> str:
    """What a status code says, in words."""
    if status == 0:
        return "every connected child synchronized"
    if status < 0:
        return "nothing could be done"
    return f"{status} connected child(ren) failed; the others synchronized"


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
