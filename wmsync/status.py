"""Cluster status: what each repository of a cluster holds of the others (docs/design.md §11).

Reads only: the parent's node table names the children; each child is asked for its
own node table, how many changes wait in each direction (``count_changes``: the server
counts and writes no export file) and its conflict log. Anything inconsistent becomes
a warning: a child naming another parent too, a row a child no longer mirrors, a child
whose server cannot be reached, a child not synchronized for longer than ``max_age``.

Exit codes of ``wmsync status`` (docs/design.md §5): 0 healthy, 1 a child unreachable
or (with ``max_age``) older than it, 2 nothing readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from .errors import WMSyncError, redact_url
from .membership import canonical_name, node_row, same_name
from .pairrules import watermarks
from .replica import Replica, ReplicaFactory

__all__ = ["ClusterStatus", "RepositoryStatus", "cluster_status"]

HEALTHY, UNHEALTHY, UNREADABLE = 0, 1, 2


@dataclass
class RepositoryStatus:
    """One repository of the cluster as the status shows it."""

    name: str
    role: str  # "parent" or "child"
    url: str  # redacted
    id_block: Optional[List[int]] = None  # [first id, size]
    last_sync: Optional[int] = None  # epoch ms, as the parent recorded it
    to_parent: Optional[int] = None  # the child's changes the parent has not got
    to_child: Optional[int] = None  # the parent's changes the child has not got
    full_exchange: bool = False  # the pair's watermarks are not trusted
    conflicts: Optional[int] = None
    reachable: bool = False
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "url": self.url,
            "id_block": self.id_block,
            "last_sync": _iso(self.last_sync),
            "waiting_to_parent": self.to_parent,
            "waiting_to_child": self.to_child,
            "full_exchange": self.full_exchange,
            "conflicts": self.conflicts,
            "reachable": self.reachable,
            "error": self.error,
            "warnings": list(self.warnings),
        }


@dataclass
class ClusterStatus:
    """The whole cluster: the parent first, then its children in node-table order."""

    parent: RepositoryStatus
    children: List[RepositoryStatus] = field(default_factory=list)
    max_age_hours: Optional[float] = None
    checked: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def repositories(self) -> List[RepositoryStatus]:
        return [self.parent, *self.children]

    @property
    def warnings(self) -> List[str]:
        return [w for repo in self.repositories for w in repo.warnings]

    @property
    def code(self) -> int:
        """0 healthy, 1 a child unreachable or too old, 2 nothing readable."""
        if not self.parent.reachable:
            return UNREADABLE
        if any(not c.reachable or self._too_old(c) for c in self.children):
            return UNHEALTHY
        return HEALTHY

    def _too_old(self, child: RepositoryStatus) -> bool:
        if self.max_age_hours is None:
            return False
        if child.last_sync is None:
            return True
        age = self.checked.timestamp() - child.last_sync / 1000
        return age > self.max_age_hours * 3600

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.code,
            "checked": self.checked.isoformat().replace("+00:00", "Z"),
            "max_age_hours": self.max_age_hours,
            "parent": self.parent.to_dict(),
            "children": [child.to_dict() for child in self.children],
            "warnings": self.warnings,
        }

    def lines(self) -> List[str]:
        """The status as a text table, then the warnings."""
        header = [
            "repository",
            "role",
            "id block",
            "last sync",
            "to parent",
            "to child",
            "conflicts",
            "reachable",
            "URL",
        ]
        rows = [header] + [_row(repo) for repo in self.repositories]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        for repo in self.repositories:
            if repo.error:
                out.append(f"error: {repo.name}: {repo.error}")
        out += [f"warning: {text}" for text in self.warnings]
        verdict = {HEALTHY: "healthy", UNHEALTHY: "unhealthy", UNREADABLE: "nothing readable"}[
            self.code
        ]
        out.append(f"Cluster of {self.parent.name}: {len(self.children)} children, {verdict}")
        return out


def _iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _local(ms: Optional[int]) -> str:
    if ms is None:
        return "never"
    return (
        datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    )


def _count(value: Optional[int], full: bool) -> str:
    if value is None:
        return "-"
    return f"{value} (full)" if full else str(value)


def _row(repo: RepositoryStatus) -> List[str]:
    block = "-"
    if repo.id_block:
        block = f"{repo.id_block[0]}-{repo.id_block[0] + repo.id_block[1] - 1}"
    return [
        repo.name,
        repo.role,
        block,
        _local(repo.last_sync) if repo.role == "child" else "-",
        _count(repo.to_parent, repo.full_exchange),
        _count(repo.to_child, repo.full_exchange),
        "-" if repo.conflicts is None else str(repo.conflicts),
        "yes" if repo.reachable else "no",
        repo.url,
    ]


def _int(value: Any) -> Optional[int]:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _block(row: Optional[Mapping[str, Any]]) -> Optional[List[int]]:
    if row is None or _int(row.get("jobIdStart")) is None:
        return None
    from .idblocks import JOB_ID_BLOCK

    return [int(row["jobIdStart"]), _int(row.get("jobIdBlock")) or JOB_ID_BLOCK]


def _rows(info: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [n for n in info.get("nodes") or [] if isinstance(n, Mapping)]


def cluster_status(
    parent_url: str,
    parent_name: str,
    factory: ReplicaFactory,
    *,
    max_age_hours: Optional[float] = None,
) -> ClusterStatus:
    """Read the cluster of *parent_name*; changes nothing anywhere.

    Never raises for an unreachable repository: it is shown as such (and a parent that
    cannot be read makes the status 2).
    """
    parent_url = parent_url.rstrip("/")
    top = RepositoryStatus(parent_name, "parent", redact_url(parent_url))
    result = ClusterStatus(top, max_age_hours=max_age_hours)
    try:
        parent = factory(parent_url)
    except WMSyncError as exc:
        top.error = str(exc)
        return result
    try:
        try:
            info = parent.replication_info()
            top.name = canonical_name(info, parent_name, parent_url, "parent")
            top.reachable = True
            top.id_block = _block(node_row(info, top.name))
            top.conflicts = len(parent.conflicts())
        except WMSyncError as exc:
            top.error = str(exc)
            return result
        for row in _rows(info):
            name = str(row.get("name", ""))
            if same_name(name, top.name):
                continue
            if row.get("isParent"):
                top.warnings.append(
                    f"{top.name} names {name} as its parent: it is a child in another cluster too"
                )
                continue
            result.children.append(_child_status(parent, top.name, row, factory))
    finally:
        parent.close()
    for child in result.children:
        if result._too_old(child):
            when = (
                "never synchronized"
                if child.last_sync is None
                else f"last synchronized at {_local(child.last_sync)}"
            )
            child.warnings.append(
                f"{child.name}: {when}, longer ago than --max-age {max_age_hours:g} hours"
            )
    return result


def _child_status(
    parent: Replica, parent_name: str, p_row: Mapping[str, Any], factory: ReplicaFactory
) -> RepositoryStatus:
    name = str(p_row.get("name", ""))
    url = str(p_row.get("serverURL") or "").rstrip("/")
    repo = RepositoryStatus(
        name,
        "child",
        redact_url(url) or "-",
        id_block=_block(p_row),
        last_sync=_int(p_row.get("lastSync")),
    )
    if not url:
        repo.error = "the parent's row has no URL"
        repo.warnings.append(f"{name}: the parent's row has no URL; it cannot be reached")
        return repo
    try:
        child = factory(url)
    except WMSyncError as exc:
        return _unreachable(repo, exc)
    try:
        try:
            info = child.replication_info()
        except WMSyncError as exc:
            return _unreachable(repo, exc)
        repo.reachable = True
        actual = str(info.get("repository") or "")
        if actual and not same_name(actual, name):
            repo.warnings.append(
                f"{name}: the server at {repo.url} is the repository {actual!r}, not {name!r}"
            )
            return repo
        c_row = node_row(info, parent_name)
        if c_row is None or not c_row.get("isParent"):
            repo.warnings.append(
                f"{name} no longer names {parent_name} as its parent: a stale row on "
                f"{parent_name} (remove it with: wmsync clear --parent-url <parent URL> "
                f"--parent-name {parent_name} --child {name})"
            )
        for other in _rows(info):
            other_name = str(other.get("name", ""))
            if (
                other.get("isParent")
                and not same_name(other_name, parent_name)
                and not same_name(other_name, name)
            ):
                repo.warnings.append(f"{name} has two parents: {parent_name} and {other_name}")
        trusted, p_mark, c_mark = watermarks(p_row, c_row, False)
        repo.full_exchange = not trusted
        repo.to_parent = child.count_changes(c_mark, parent_name if trusted else None)
        repo.to_child = parent.count_changes(p_mark, name if trusted else None)
        repo.conflicts = len(child.conflicts())
    except WMSyncError as exc:
        repo.error = str(exc)
        repo.warnings.append(f"{name}: could not be read in full: {exc}")
    finally:
        child.close()
    return repo


def _unreachable(repo: RepositoryStatus, exc: WMSyncError) -> RepositoryStatus:
    repo.error = str(exc)
    repo.warnings.append(f"{repo.name} is unreachable: {exc}")
    return repo
