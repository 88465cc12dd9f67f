"""A joining child's own jobs move into its id block (docs/design.md §4, "A job has one
id on every repository").

When a child joins a cluster holding jobs it made itself, their ids were taken before
it had a block and may name other jobs elsewhere. The child (never the parent) gives
each of them the next free id of its block, once, when it joins, and logs the old id in
the job's activity. A job's id is not part of its content: the job keeps its version
(vector, ``modified``, ``origin``) and generation; only the activity record is a new
element, which travels like any other.
"""

from __future__ import annotations

import json
from typing import Dict, List, Mapping

from .session import Session

__all__ = ["own_only", "renumber_own_jobs"]

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
    """Give every live job made here whose id lies outside ``[start, start + size)`` the
    next free id of that block, in the order of their old ids.

    "Made here" is a local version (empty ``via``) whose vector counts only this
    repository: a copy received from anywhere, even one edited here since, keeps its
    id. Each renumbered job gets an activity record ("Job renumbered from 12 to 1000001
    when joining *peer*") made by *user*. A second call finds nothing to do.

    :param dry_run: change nothing; answer what would be done.
    :returns: ``[{"guid", "from", "to"}]``, in the order the ids were given.
    :raises ValueError: the block is not a range of positive ids, or it has no room left.
    """
    if start < 1 or size < 1:
        raise ValueError(f"not a job id block: start {start}, size {size}")
    end = start + size
    rows = session.conn.execute(
        "SELECT guid, local_id, vv FROM elements WHERE kind = 'Job' AND deleted = 0 "
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
    if dry_run:
        return done
    for entry in done:
        # The id is bookkeeping, not content: the row keeps its version and generation.
        session.conn.execute(
            "UPDATE elements SET local_id = ? WHERE guid = ?", (entry["to"], entry["guid"])
        )
        session.log_activity(
            str(entry["guid"]),
            ACTIVITY_TYPE,
            user,
            f"Job renumbered from {entry['from']} to {entry['to']} when joining {peer}",
        )
    return done


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
