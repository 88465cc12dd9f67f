"""A joining child's own jobs move into its id block (docs/design.md §4, "A job has one
id on every repository").

When a child joins a cluster holding jobs it made itself, their ids were taken before
it had a block and may name other jobs elsewhere. The child (never the parent) gives
each of them the next free id of its block, once, when it joins, and logs the old id in
the job's activity. A job's id is not part of its content: the job keeps its version
(vector, ``modified``, ``origin``) and generation; only the activity record is a new
element, which travels like any other.

A repository that went back in time (restored from a backup or rebuilt empty) may have
handed out again, before the run that finds it, ids of its own block that the cluster
already gave other jobs. :func:`renumber_reused_ids` moves the jobs it made since then
whose ids the cluster holds for another job past the highest id the cluster has seen in
the block, on that repository, before anything is exchanged (docs/design.md §4,
"Restores and rebuilds"). :func:`held_job_ids` is what a partner answers about a block.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .session import Session

__all__ = ["held_job_ids", "own_only", "renumber_own_jobs", "renumber_reused_ids"]

#: The activity type the record is logged under (Workflow Manager's "Job properties
#: updated"; its message says what changed).
ACTIVITY_TYPE = "UpdateJob"


def own_only(vv: Mapping[str, int], repository: str) -> bool:
    """Whether a version vector counts only *repository*: its name or an incarnation
    of it (``Name~x``, docs/design.md §4, "Restores and rebuilds"). Such a version was
    made here and never received (an empty vector counts no one: not made here)."""
    own = repository.lower()
    return bool(vv) and all(
        name.lower() == own or name.lower().startswith(own + "~") for name in vv
    )


def renumber_own_jobs(
    session: Session,
    start: int,
    size: int,
    peer: str,
    user: str,
    *,
    dry_run: bool = False,
) -> List[Dict[str, object]]:
    """Give every job made here whose id lies outside ``[start, start + size)`` the
    next free id of that block, in the order of their old ids.

    "Made here" is a local version (empty ``via``) whose vector counts only this
    repository: a copy received from anywhere, even one edited here since, keeps its
    id. A deleted job moves too, since its tombstone holds the id (left there, it would
    make the job that has that id elsewhere arrive here under another one). Each live
    renumbered job gets an activity record ("Job renumbered from 12 to 1000001 when
    joining *peer*") made by *user*; a deleted one none (nothing live is added to a
    deleted job). A second call finds nothing to do.

    :param dry_run: change nothing; answer what would be done.
    :returns: ``[{"guid", "from", "to"}]``, in the order the ids were given.
    :raises ValueError: the block is not a range of positive ids, or it has no room left.
    """
    if start < 1 or size < 1:
        raise ValueError(f"not a job id block: start {start}, size {size}")
    end = start + size
    rows = session.conn.execute(
        "SELECT guid, local_id, vv FROM elements WHERE kind = 'Job' "
        "AND via = '' AND local_id IS NOT NULL AND (local_id < ? OR local_id >= ?) "
        "ORDER BY local_id, guid",
        (start, end),
    ).fetchall()
    repository = session.repository
    moving = [(str(g), int(i)) for g, i, vv in rows if own_only(json.loads(vv), repository)]
    if not moving:
        return []
    next_id = _first_free(session, start, end)
    if next_id + len(moving) > end:
        raise ValueError(
            f"job id block {start}-{end - 1} has room for {max(0, end - next_id)} more "
            f"job(s), {len(moving)} to renumber"
        )
    done: List[Dict[str, object]] = []
    for guid, old in moving:
        done.append({"guid": guid, "from": old, "to": next_id})
        next_id += 1
    if not dry_run:
        _apply(session, done, user, f"when joining {peer}")
    return done


def renumber_reused_ids(
    session: Session,
    start: int,
    size: int,
    high: int,
    since_gen: int,
    user: str,
    *,
    guids: Optional[Iterable[str]] = None,
    dry_run: bool = False,
) -> List[Dict[str, object]]:
    """After this repository went back in time: give the jobs it made since then whose
    ids lie in ``[start, high]`` (*high*: the highest id the cluster has seen in this
    block) the next free ids past *high*, in the order of their old ids.

    "Made since then" is a job, live or deleted (its tombstone holds the id), with a
    local version (empty ``via``) whose vector counts only this repository (any
    incarnation) and which changed after *since_gen*, its last confirmed
    synchronization. Of those, only the *guids* given move (the
    caller names the ones whose id a partner holds for another job; a job the partner
    holds under the same id keeps it); with ``dry_run`` the candidates are answered and
    nothing changes. Each live renumbered job gets an activity record. A second call finds
    nothing to do: the jobs are past *high* then.

    :returns: ``[{"guid", "from", "to"}]``, in the order the ids were given.
    :raises ValueError: not a block, *high* outside it, or no room left past *high*.
    """
    if start < 1 or size < 1:
        raise ValueError(f"not a job id block: start {start}, size {size}")
    end = start + size
    if not start - 1 <= high < end:
        raise ValueError(f"highest id {high} is not in job id block {start}-{end - 1}")
    rows = session.conn.execute(
        "SELECT guid, local_id, vv FROM elements WHERE kind = 'Job' "
        "AND via = '' AND gen > ? AND local_id >= ? AND local_id <= ? ORDER BY local_id, guid",
        (since_gen, start, high),
    ).fetchall()
    repository = session.repository
    wanted = None if guids is None else set(guids)
    moving = [
        (str(g), int(i))
        for g, i, vv in rows
        if own_only(json.loads(vv), repository) and (wanted is None or str(g) in wanted)
    ]
    if not moving:
        return []
    next_id = max(_first_free(session, start, end), high + 1)
    if next_id + len(moving) > end:
        raise ValueError(
            f"job id block {start}-{end - 1} has room for {max(0, end - next_id)} more "
            f"job(s), {len(moving)} to renumber"
        )
    done: List[Dict[str, object]] = []
    for guid, old in moving:
        done.append({"guid": guid, "from": old, "to": next_id})
        next_id += 1
    if not dry_run:
        _apply(
            session,
            done,
            user,
            f"because {repository} went back in time (restored or rebuilt) and the cluster "
            "had already given the old id to another job",
        )
    return done


def held_job_ids(
    session: Session, start: int, size: int, ids: Iterable[int]
) -> Tuple[Optional[int], Dict[int, str]]:
    """What this repository holds of a job id block: the highest id in it (tombstones
    too: an id is never handed out twice), or ``None``; and the GUID of the job (live or
    deleted) at each of *ids* it holds."""
    if start < 1 or size < 1:
        raise ValueError(f"not a job id block: start {start}, size {size}")
    row = session.conn.execute(
        "SELECT MAX(local_id) FROM elements WHERE kind = 'Job' AND local_id >= ? AND local_id < ?",
        (start, start + size),
    ).fetchone()
    highest = int(row[0]) if row and row[0] is not None else None
    held: Dict[int, str] = {}
    for local_id in sorted(set(ids)):
        found = session.conn.execute(
            "SELECT guid FROM elements WHERE kind = 'Job' AND local_id = ? ORDER BY deleted",
            (local_id,),
        ).fetchone()
        if found is not None:
            held[local_id] = str(found[0])
    return highest, held


def _apply(session: Session, done: List[Dict[str, object]], user: str, why: str) -> None:
    for entry in done:
        # The id is bookkeeping, not content: the row keeps its version and generation.
        session.conn.execute(
            "UPDATE elements SET local_id = ? WHERE guid = ?", (entry["to"], entry["guid"])
        )
        if session.get_live(str(entry["guid"])) is None:
            continue  # a deleted job: no live record is added to it
        session.log_activity(
            str(entry["guid"]),
            ACTIVITY_TYPE,
            user,
            f"Job renumbered from {entry['from']} to {entry['to']} {why}",
        )


def _first_free(session: Session, start: int, end: int) -> int:
    """The id after the highest one held in the block (tombstones too: ids are never
    reused), and past the floor a restore set (docs/design.md §4)."""
    row = session.conn.execute(
        "SELECT MAX(local_id) FROM elements WHERE kind = 'Job' AND local_id >= ? AND local_id < ?",
        (start, end),
    ).fetchone()
    highest = int(row[0]) if row and row[0] is not None else start - 1
    floor = int(session.meta("jobIdFloor") or 0)
    return max(highest + 1, floor if start <= floor < end else start)
