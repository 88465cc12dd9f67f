"""Repository names and cluster membership (docs/design.md §4, "Repository identity
and membership").

A repository's name is the one its server reports; what a user typed is matched to it
without regard to case, and from then on only the server's spelling is used. A
repository belongs to at most one cluster, in one role; its node table says which:
a row marked ``isParent`` names its parent, other rows (but its own) name its children.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from .errors import SyncRefused, redact_url

__all__ = ["canonical_name", "check_child", "check_parent", "node_row", "same_name"]

_LEAVE = "Clear Job Replication Information"


def same_name(a: str, b: str) -> bool:
    """Repository names match without regard to case."""
    return a.casefold() == b.casefold()


def node_row(info: Mapping[str, Any], name: str) -> Optional[Mapping[str, Any]]:
    """The node row of *name* in a replication/info answer, if there is one.

    The exact spelling wins over another case: rows written before names were
    canonical may still carry a typed spelling beside the server's own.
    """
    matches = [n for n in _rows(info) if same_name(str(n.get("name", "")), name)]
    exact = [n for n in matches if n.get("name") == name]
    found = exact or matches
    return found[0] if found else None


def canonical_name(info: Mapping[str, Any], typed: str, url: str, role: str) -> str:
    """The repository's own spelling of its name, once it matches *typed*.

    :param role: ``"parent"`` or ``"child"``, for the message.
    :raises SyncRefused: the server is another repository, or names none.
    """
    actual = str(info.get("repository") or "")
    if not actual:
        raise SyncRefused(f"the {role} at {redact_url(url)} does not report its repository name")
    if not same_name(actual, typed):
        raise SyncRefused(
            f"the {role} at {redact_url(url)} is the repository {actual!r}, not {typed!r}"
        )
    return actual


def check_parent(info: Mapping[str, Any], name: str) -> None:
    """Refuse a parent that is a child in another cluster.

    :raises SyncRefused: naming the other cluster and how to leave it.
    """
    other = _parent_row(info, name, name)
    if other is not None:
        raise SyncRefused(
            f"{name} is a child in the cluster of {_describe(other)}; a repository "
            f"belongs to one cluster in one role. To make it a parent, first remove it "
            f"from that cluster: {_LEAVE} ({_clear_command(other, name)})"
        )


def check_child(info: Mapping[str, Any], name: str, parent: str) -> None:
    """Refuse a child that has another parent, or that is itself a parent.

    :raises SyncRefused: naming the other cluster and how to leave it.
    """
    other = _parent_row(info, name, parent)
    if other is not None:
        raise SyncRefused(
            f"it already belongs to the cluster of {_describe(other)}; a repository "
            f"belongs to one cluster. To move it to {parent}, first remove it from that "
            f"cluster: {_LEAVE} ({_clear_command(other, name)})"
        )
    children = _children(info, name)
    if children:
        raise SyncRefused(
            f"it is the parent of its own cluster (children: {', '.join(children)}); a "
            f"repository belongs to one cluster in one role. To make it a child of "
            f"{parent}, first dissolve that cluster: {_LEAVE} (wmsync clear --parent-url "
            f"<its URL> --parent-name {name})"
        )


def _rows(info: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [n for n in info.get("nodes") or [] if isinstance(n, Mapping)]


def _parent_row(info: Mapping[str, Any], own: str, allowed: str) -> Optional[Mapping[str, Any]]:
    """A row marking as parent a repository other than *own* and *allowed*."""
    for node in _rows(info):
        row_name = str(node.get("name", ""))
        if (
            node.get("isParent")
            and not same_name(row_name, own)
            and not same_name(row_name, allowed)
        ):
            return node
    return None


def _children(info: Mapping[str, Any], own: str) -> List[str]:
    return [
        str(node.get("name", ""))
        for node in _rows(info)
        if not node.get("isParent") and not same_name(str(node.get("name", "")), own)
    ]


def _describe(row: Mapping[str, Any]) -> str:
    url = str(row.get("serverURL") or "")
    return f"{row.get('name')} ({redact_url(url)})" if url else str(row.get("name"))


def _clear_command(parent_row: Mapping[str, Any], child: str) -> str:
    url = redact_url(str(parent_row.get("serverURL") or "")) or "<its URL>"
    return f"wmsync clear --parent-url {url} --parent-name {parent_row.get('name')} --child {child}"
