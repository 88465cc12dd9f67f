"""A stock server restored from a backup (docs/design.md §4 "Restores and rebuilds",
§10; docs/stock.md).

A stock server has no instance id or sync id of ours, so the state store notices a
restore by what a running server never does:

- an activity record the shadow saw on a job is gone while the job is still there
  (Workflow Manager's activity log only grows; deleting a job takes its log with it);
- a job comes back under an id the shadow holds as deleted (ids are never reused).

Once one sign is found, any job may have been set back (a server may log no activity
for some edits), so what the scan finds different on any job is folded as a version
*concurrent* with the shadow's (a version vector of its
own, under a restore incarnation ``Name~r<token>``), never as a successor that would
silently replace the versions the restore lost. If nobody touched the job since the
restore, that version is dated just before the shadow's: the merge rule keeps the
cluster's version, logs the server's as the loser, and the writer puts the cluster's
version back. If users worked on it since (new activity records), it is dated now and
the rule decides as between any two concurrent edits; the loser is logged either way.
A job deleted in the cluster that the restore brought back is deleted again (its
content logged); jobs, holds and activity records the restore took away are written to
the server again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Set

from wmsync.model import Element
from wmsync.repository.importing import Importer
from wmsync.repository.session import Session

from . import state, views
from .scan import Snapshot


@dataclass
class Signs:
    """What in a scan shows that the server went back (nothing: not restored)."""

    lines: List[str] = field(default_factory=list)
    lost: Set[int] = field(default_factory=set)  # jobs whose activity log lost records

    def __bool__(self) -> bool:
        return bool(self.lines)


def signs_of_restore(s: Session, snapshot: Snapshot, seen_jobs: Mapping[int, str]) -> Signs:
    """Compare the scan with what the shadow saw (see the module's text)."""
    signs = Signs()
    by_job: Dict[int, List[str]] = {}
    for key, (job_id, _, _) in state.seen(s.conn, "Activity").items():
        by_job.setdefault(job_id, []).append(key)
    for job_id, keys in sorted(by_job.items()):
        if job_id not in snapshot.jobs:
            continue
        found = set(views.activity_keys(job_id, snapshot.jobs[job_id].activity))
        if any(k not in found for k in keys):
            signs.lost.add(job_id)
    if signs.lost:
        shown = ", ".join(str(j) for j in sorted(signs.lost)[:5])
        more = f" and {len(signs.lost) - 5} more" if len(signs.lost) > 5 else ""
        signs.lines.append(f"activity records are gone from job(s) {shown}{more}")
    back = []
    for job_id in snapshot.jobs:
        if job_id not in seen_jobs:
            held = s.by_id("Job", job_id, live=False)
            if held is not None and held.deleted:
                back.append(job_id)
    if back:
        signs.lines.append(f"deleted job(s) {', '.join(map(str, sorted(back)[:5]))} are back")
    return signs


def edited_since_restore(s: Session, job_id: int, activity: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a job the restore set back has activity records the shadow never saw:
    a user worked on it after the restore (Workflow Manager logs every change)."""
    seen = state.seen_of_job(s.conn, "Activity", job_id)
    return any(key not in seen for key in views.activity_keys(job_id, activity))


def restore_incarnation(s: Session) -> str:
    """The name the restore's versions are counted under (one per restore found)."""
    token = state.meta(s.conn, "restoreIncarnation")
    if token is None:
        token = secrets.token_hex(3)
        state.set_meta(s.conn, "restoreIncarnation", token)
    return f"{s.repository}~r{token}"


def end_restore(s: Session) -> None:
    """The restore is handled: a later one gets an incarnation of its own."""
    s.conn.execute("DELETE FROM stock_meta WHERE key = 'restoreIncarnation'")


def restored_version(
    s: Session,
    current: Element,
    fields: Dict[str, str],
    *,
    deleted: bool = False,
    edited: bool = False,
) -> Element:
    """Fold what a restored server holds for *current* as a concurrent, older version:
    the merge rule keeps *current* and logs the server's content as the loser. Returns
    that older version (its version vector is what the server now holds: a later user
    edit there is concurrent with the cluster's version, not a successor of it).

    *edited*: users worked on the job after the restore; its version is then dated now,
    so the merge rule decides between it and the versions the restore lost as between
    any two concurrent edits (the loser is logged either way)."""
    counter = restore_incarnation(s)
    vv = {counter: int(current.vv.get(counter, 0)) + 1}
    older = Element(
        kind=current.kind,
        guid=current.guid,
        vv=vv,
        modified=s.store.now_ms() if edited else max(0, current.modified - 1),
        origin=s.repository,
        fields={} if deleted else fields,
        deleted=deleted,
        local_id=current.local_id,
    )
    importer = Importer(s, "")
    importer.add([older])
    importer.finish()
    return older


def forget_lost_records(
    s: Session, job_id: int, holds: Sequence[str], activity: Sequence[str]
) -> None:
    """Forget the holds and activity records the server no longer has (the restore
    took them), so that the writer puts them back."""
    conn = s.conn
    for kind, present in (("Hold", set(holds)), ("Activity", set(activity))):
        for key in list(state.seen_of_job(conn, kind, job_id)):
            if key not in present:
                conn.execute(
                    "DELETE FROM stock_seen WHERE kind = ? AND server_key = ?", (kind, key)
                )
