"""Clear Job Replication Information: take a child, or a whole cluster, apart
(docs/design.md §11).

A repository belongs to one cluster in one role (docs/design.md §4); leaving it means
removing node rows, nothing else. Jobs and every other element stay, and so does each
repository's row about itself: it holds the repository's job id block, so ids already
handed out are never handed out again.

For each child the child's side goes first (its row naming the parent), then the
parent's row of it. A child that cannot be reached is still removed from the parent
and listed: its own side is cleared by running ``wmsync clear --url CHILD_URL``
(:func:`clear_repository`) once it can be reached, before it joins another cluster
(until then the membership checks refuse it, with that command in the message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from .errors import SyncRefused, WMSyncError, redact_url
from .membership import canonical_name, node_row, same_name
from .replica import Replica, ReplicaFactory

__all__ = ["ClearResult", "Cleared", "clear_cluster", "clear_repository"]


@dataclass
class Cleared:
    """What was removed on one repository, or why its side is left to do."""

    repository: str
    url: str  # redacted
    removed: List[str] = field(default_factory=list)  # names of the node rows removed
    error: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "repository": self.repository,
            "url": self.url,
            "removed": self.removed,
            "error": self.error,
        }


@dataclass
class ClearResult:
    """The repositories touched, the parent first; ``status`` is how many could not be
    cleared on their side (0: all done)."""

    repositories: List[Cleared] = field(default_factory=list)

    @property
    def status(self) -> int:
        return sum(1 for r in self.repositories if r.error)

    def to_dict(self) -> Dict[str, Any]:
        return {"status": self.status, "repositories": [r.to_dict() for r in self.repositories]}

    def lines(self) -> List[str]:
        out = []
        for repo in self.repositories:
            if repo.error:
                out.append(f"{repo.repository}: NOT cleared on its side: {repo.error}")
            elif repo.removed:
                out.append(f"{repo.repository}: removed the rows of {', '.join(repo.removed)}")
            else:
                out.append(f"{repo.repository}: nothing to remove")
        out.append("Jobs were not touched; each repository keeps its own job id block.")
        return out


def _deleter(replica: Replica) -> Any:
    """The replica's ``delete_node``; a replica without one (a stock server, whose rows
    the state store keeps) is refused by name rather than failing half-way."""
    delete = getattr(replica, "delete_node", None)
    if delete is None:
        raise SyncRefused(
            f"{replica.display_url} is a server without the WorkflowSync extensions: "
            "clearing its replication information is not supported yet"
        )
    return delete


def _rows(info: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [n for n in info.get("nodes") or [] if isinstance(n, Mapping)]


def clear_cluster(
    parent_url: str,
    parent_name: str,
    factory: ReplicaFactory,
    *,
    child: Optional[str] = None,
) -> ClearResult:
    """Remove *child* (or every child) from the cluster of *parent_name*.

    :raises SyncRefused: the parent is another repository, *child* names no child of
        it, or the parent's server lacks the extensions; nothing was changed.
    :raises RepositoryError: the parent cannot be read; nothing was changed.
    """
    parent_url = parent_url.rstrip("/")
    parent = factory(parent_url)
    try:
        info = parent.replication_info()
        name = canonical_name(info, parent_name, parent_url, "parent")
        delete = _deleter(parent)
        rows = [
            r
            for r in _rows(info)
            if not r.get("isParent") and not same_name(str(r.get("name", "")), name)
        ]
        if child is not None:
            row = node_row(info, child)
            if row is None or row.get("isParent") or same_name(child, name):
                known = ", ".join(str(r.get("name")) for r in rows) or "none"
                raise SyncRefused(
                    f"{child!r} is not a child of {name} (its children: "
                    f"{known}); nothing was changed"
                )
            rows = [row]
        top = Cleared(name, redact_url(parent_url))
        result = ClearResult([top])
        for row in rows:
            child_name = str(row.get("name", ""))
            result.repositories.append(_clear_child_side(row, name, factory))
            delete(child_name)
            top.removed.append(child_name)
        return result
    finally:
        parent.close()


def _clear_child_side(row: Mapping[str, Any], parent_name: str, factory: ReplicaFactory) -> Cleared:
    name = str(row.get("name", ""))
    url = str(row.get("serverURL") or "").rstrip("/")
    done = Cleared(name, redact_url(url) or "-")
    later = f"run 'wmsync clear --url {done.url}' once it can be reached"
    if not url:
        done.error = f"the parent's row has no URL; {later}"
        return done
    try:
        replica = factory(url)
    except WMSyncError as exc:
        done.error = f"{exc}; {later}"
        return done
    try:
        info = replica.replication_info()
        actual = canonical_name(info, name, url, "child")
        done.repository = actual
        found = node_row(info, parent_name)
        if found is not None:
            _deleter(replica)(str(found.get("name")))
            done.removed.append(str(found.get("name")))
    except WMSyncError as exc:
        done.error = f"{exc}; {later}"
    finally:
        replica.close()
    return done


def clear_repository(url: str, factory: ReplicaFactory, name: Optional[str] = None) -> ClearResult:
    """Remove every node row of the repository at *url* but its own: it then belongs
    to no cluster (its side of a cluster cleared while it was unreachable, or a
    cluster whose parent is gone).

    :param name: when given, the repository must be this one (case aside).
    :raises SyncRefused, RepositoryError: nothing was changed.
    """
    url = url.rstrip("/")
    replica = factory(url)
    try:
        info = replica.replication_info()
        own = str(info.get("repository") or "")
        if name is not None:
            own = canonical_name(info, name, url, "repository")
        if not own:
            raise SyncRefused(
                f"the server at {redact_url(url)} does not report its repository name"
            )
        delete = _deleter(replica)
        done = Cleared(own, redact_url(url))
        for row in _rows(info):
            row_name = str(row.get("name", ""))
            if not same_name(row_name, own):
                delete(row_name)
                done.removed.append(row_name)
        return ClearResult([done])
    finally:
        replica.close()
