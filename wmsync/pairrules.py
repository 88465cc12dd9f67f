"""The rules a synchronization run and a plan share, on node rows and replication info
(docs/design.md §4): whether a pair's watermarks can be trusted, whether a repository
went back in time (restored from a backup or rebuilt), and which repository a URL and a
typed name really are.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import SyncRefused
from .idblocks import int_or_none
from .membership import canonical_name, check_child, check_parent, same_name
from .model import vv_from_text, vv_to_text
from .replica import Replica, ReplicaFactory
from .valuetable import ChildSpec

__all__ = [
    "counter_text",
    "gone_back",
    "read_child",
    "read_parent",
    "repository_kind",
    "watermarks",
]


def watermarks(
    parent_row: Optional[Mapping[str, Any]],
    child_row: Optional[Mapping[str, Any]],
    full: bool,
) -> Tuple[bool, int, int]:
    """Whether a pair's watermarks can be trusted, and the parent's and child's marks.

    Matching sync ids in both node rows prove both come from the same runs (no restore
    from backup, no re-added child); a mark not yet written (its direction failed) is
    then 0, not a reason to redo the other direction in full. Untrusted: (False, 0, 0).
    """
    if full or parent_row is None or child_row is None:
        return False, 0, 0
    sync_id = parent_row.get("syncId")
    if not sync_id or sync_id != child_row.get("syncId"):
        return False, 0, 0
    return (
        True,
        int_or_none(parent_row.get("lastSyncGen")) or 0,
        int_or_none(child_row.get("lastSyncGen")) or 0,
    )


def nothing_waiting(
    info: Mapping[str, Any],
    child_row: Optional[Mapping[str, Any]],
    parent_name: str,
    child_mark: int,
) -> Optional[int]:
    """The child's generation when its ``replication/info`` (*info*, with *child_row*,
    its row of the parent) counted nothing waiting for the parent in the pull's window,
    else ``None``.

    The count (``pending``, docs/protocol.md) is the server's, made in the same snapshot
    as the answer's ``generation``, from the row's ``lastSyncGen`` and cut by the row's
    name; it stands for the pull's own count only when that is the window the pull
    would export: the row spelled as the parent names itself, at the pair's watermark.
    A server without it (stock, older) answers ``None`` here, and the pull exports.
    """
    if child_row is None or child_row.get("name") != parent_name:
        return None
    pending = child_row.get("pending")
    if type(pending) is not int or pending != 0:  # not a bool, not a count of something
        return None
    if (int_or_none(child_row.get("lastSyncGen")) or 0) != child_mark:
        return None
    return int_or_none(info.get("generation"))


def gone_back(
    info: Mapping[str, Any],
    row_of_it: Optional[Mapping[str, Any]],
    its_row: Optional[Mapping[str, Any]],
) -> List[str]:
    """Why a repository went back in time (restored from a backup or rebuilt), or [].

    :param info: its replication/info (extension servers report ``instanceId``).
    :param row_of_it: the other side's node row of it (what the other side recorded).
    :param its_row: its own node row of the other side.

    The signals (docs/design.md §4, "Restores and rebuilds"), each a value the other
    side recorded only once this one had confirmed it: its instance id; the sequence
    number of the pair's syncId it holds (renewed at every watermark move, written to
    one side and then, with that confirmation, to the other: a restored side holds an
    older one, while a renewal interrupted between its writes leaves nothing confirmed
    that is not true; the number is also bumped on the side data leaves and recorded
    with its import, :meth:`_Run.sender_mark`); and, as backstops, its generation and
    its highest own counter in any version vector (compared under the incarnation it
    was recorded for: a new incarnation starts its counters again).
    """
    if row_of_it is None or not info.get("instanceId"):
        return []
    reasons = []
    recorded = row_of_it.get("peerInstance")
    if recorded and recorded != info.get("instanceId"):
        reasons.append("its instance id changed (a rebuilt or replaced database)")
    confirmed = int_or_none(row_of_it.get("peerSeq")) or 0
    held = (int_or_none(its_row.get("syncSeq")) or 0) if its_row is not None else 0
    if held < confirmed:
        reasons.append(f"it holds syncId number {held} of the pair, {confirmed} was confirmed")
    generation = int_or_none(info.get("generation"))
    peer_gen_seen = int_or_none(row_of_it.get("peerGenSeen"))
    if generation is not None and peer_gen_seen is not None and generation < peer_gen_seen:
        reasons.append(f"its generation {generation} is below the {peer_gen_seen} recorded")
    recorded_counter = _counter_mark(row_of_it.get("peerCounterSeen"))
    own = int_or_none(info.get("ownCounter"))
    if recorded_counter is not None and own is not None:
        incarnation, counter = recorded_counter
        if incarnation == str(info.get("incarnation") or "") and own < counter:
            reasons.append(
                f"its highest own counter {own} ({incarnation}) is below the {counter} recorded"
            )
    return reasons


def counter_text(info: Mapping[str, Any]) -> Optional[str]:
    """A repository's highest own counter as another records it (``incarnation:counter``,
    vv text), from its replication/info; ``None`` when it reports none."""
    own = int_or_none(info.get("ownCounter"))
    incarnation = str(info.get("incarnation") or "")
    if own is None or own < 1 or not incarnation:
        return None
    return vv_to_text({incarnation: own})


def _counter_mark(text: Any) -> Optional[Tuple[str, int]]:
    """What :func:`counter_text` wrote, read back; ``None`` for nothing or anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        mark = vv_from_text(text)
    except ValueError:
        return None
    return next(iter(mark.items())) if len(mark) == 1 else None


def read_parent(factory: ReplicaFactory, url: str, typed: str) -> Tuple[str, Dict[str, Any]]:
    """The parent's own name and replication info, once it is the repository *typed*
    names and a parent nowhere else.

    :raises SyncRefused: another repository, or a child in another cluster.
    :raises RepositoryError: it cannot be read.
    """
    replica = factory(url)
    try:
        info = replica.replication_info()
    finally:
        replica.close()
    name = canonical_name(info, typed, url, "parent")
    check_parent(info, name)
    return name, info


def read_child(
    child: Replica, spec: ChildSpec, parent_name: str, parent_url: str
) -> Tuple[str, Dict[str, Any]]:
    """A child's own name and replication info, once it is the repository its row
    names, not the parent itself, and in no other cluster.

    :raises SyncRefused: the row points at the parent or at another repository, or the
        repository belongs to another cluster.
    """
    url = spec.url.rstrip("/")
    if same_name(spec.name, parent_name) or _same_url(url, parent_url):
        raise SyncRefused("it is the parent repository itself")
    info = child.replication_info()
    name = canonical_name(info, spec.name, url, "child")
    if same_name(name, parent_name):
        raise SyncRefused("it is the parent repository itself")
    check_child(info, name, parent_name)
    return name, info


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def repository_kind(info: Mapping[str, Any]) -> str:
    """``"stock"`` for a server synchronized through the state store (its replica says
    so in its replication info), else ``"extensions"``."""
    return "stock" if info.get("stock") else "extensions"
