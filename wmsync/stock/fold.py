"""Folding a scan into the shadow repository (docs/design.md §10, change detection).

Every server record whose view differs from the view last seen becomes a *local edit*
of the shadow (this repository's counter in its vv, ``modified`` = now, ``origin`` =
this repository, a new generation); a job that vanished is a local delete, with its
holds and activity records. The shadow then exports like any repository.

Rules that keep a scan from inventing changes:

- a job with an open *intent* (the tool was writing to it when a run stopped) is read
  as the tool's own half-done write: its current state is recorded as seen, nothing is
  edited, and the writer finishes the job's write;
- a job the shadow holds under the same id but has never seen on the server (created
  there by an interrupted write, or a shadow being rebuilt) is *adopted*: the same job;
- a new shadow (first run, or a state file deleted) meets every job for the first
  time. Jobs are matched by id: a job gets the GUID another stock repository of the
  state store gave its id, else the one its tags name (a copy the tool wrote: the tags
  on its holds and activity records carry the job's GUID), else the one its id derives
  (:func:`stock_guid`), so copies of one job on several servers meet as one. Its
  version is counted under the shadow's own incarnation (``Name~token``), so that a
  difference from what the cluster holds is decided by the merge rule as a conflict
  and logged, never dropped as "older". Its content leaves out what each server sets
  for itself (created, started and end dates, creator), so copies of one job agree.
  A job whose job type is not yet mapped waits one run (the first run brings the
  cluster's job types);
- a user's edit of a job whose shadow version was not yet written to the server (it
  waits for configuration, or a run was interrupted) is made on the version the server
  last held, so it is concurrent with the unwritten one: the merge rule decides and
  the loser is logged, instead of the edit silently replacing it;
- activity records carrying the tool's provenance tag are the tool's own writes: they
  map to the GUID in the tag; untagged records that appear on a job while the tool
  writes to it are side effects of those writes and are never exported (Workflow
  Manager logs activity on every change); other new records are users' records and
  travel.

Configuration is read, never written: a job type, user or group found on the server
that the shadow does not hold is added with an empty version vector (the weakest
version, as for the default configuration), so any version from an extension server
supersedes it and two stock servers with the same item agree.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from wmsync.model import Element, guid_for_name
from wmsync.repository.catalog import DEFAULT_ORIGIN
from wmsync.repository.importing import Importer
from wmsync.repository.session import Session

from . import restore, state, views
from .scan import Config, JobRead, Snapshot
from .state import JobClaims


def fold_config(s: Session, config: Config, first: bool) -> Dict[int, str]:
    """Map the server's job types to GUIDs by name; add unknown users and groups.

    A job type the shadow does not hold by name is added (weak, see above) only after
    the shadow's first run, which brings the cluster's job types: a stock server's
    "Edit Data" then maps to the cluster's "Edit Data" instead of becoming a second one.
    A mapping to such an added job type moves to a cluster job type of the same name
    once one arrives. :returns: ``{server job type id: GUID}``.
    """
    conn = s.conn
    seen_types = state.seen(conn, "JobType")
    mapping: Dict[int, str] = {}
    by_name: Dict[str, str] = {}
    weak: set[str] = set()
    for found in s.live("JobType"):
        name = found.fields.get("name", "")
        if not found.element.vv:
            weak.add(found.guid)
            by_name.setdefault(name, found.guid)
        else:
            by_name[name] = found.guid  # a version from the cluster wins the name
    for type_id, name in config.job_types.items():
        known = seen_types.get(str(type_id))
        guid = known[1] if known is not None else ""
        if guid and guid in weak and by_name.get(name, guid) != guid:
            guid = ""  # the cluster's job type of this name arrived: map to it
        if not guid:
            guid = by_name.get(name, "")
        if not guid and first:
            continue
        if not guid:
            guid = guid_for_name("JobType", name)
            if s.get(guid) is None:
                detail = config.job_type_details.get(type_id, {})
                # "created" last of all: where a name clashes, the parent renames this one.
                fields = {"name": name, "created": str(WEAK_CREATED)}
                if detail.get("description"):
                    fields["description"] = str(detail["description"])
                s.write(_weak("JobType", guid, fields, s.next_id("JobType")), "")
        state.set_seen(conn, "JobType", str(type_id), 0, guid, "")
        mapping[type_id] = guid
    for user in config.users.values():
        name = str(user["userName"])
        guid = guid_for_name("User", name)
        if s.get(guid) is None:
            fields = {"userName": name}
            if user.get("fullName"):
                fields["fullName"] = str(user["fullName"])
            s.write(_weak("User", guid, fields, None), "")
    for group in config.groups.values():
        name = str(group["name"])
        guid = guid_for_name("Group", name)
        if s.get(guid) is None:
            members = [str(u) for u in group.get("users") or []]
            fields = {"name": name}
            if members:
                fields["users"] = " ".join(quote(u, safe="") for u in members)
            s.write(_weak("Group", guid, fields, s.next_id("Group")), "")
    return mapping


#: ``created`` of a job type first seen on a stock server (later than any real one).
WEAK_CREATED = 2**53

#: Namespace of the GUIDs of elements first seen on a stock server.
_STOCK_NAMESPACE = uuid.UUID("0c6b7f7e-52a4-4f7e-9d0b-6c1e0e8f5a21")


def stock_guid(kind: str, key: str) -> str:
    """The GUID of an element first seen on a stock server, derived from what identifies
    it there (a job by its id, or by repository and id where another job has the id; a
    hold by repository and hold id; an activity record by repository, job and
    content). A rebuilt state store derives the same GUIDs again, so the merge rule
    meets the same elements; copies the tool wrote elsewhere carry their job's GUID in
    their tags."""
    return str(uuid.uuid5(_STOCK_NAMESPACE, f"{kind}:{key}"))


def _weak(kind: str, guid: str, fields: Dict[str, str], local_id: Optional[int]) -> Element:
    return Element(
        kind=kind,
        guid=guid,
        vv={},
        modified=0,
        origin=DEFAULT_ORIGIN,
        fields=fields,
        local_id=local_id,
    )


def job_guids(conn: Any) -> Dict[int, str]:
    """``{server job id: GUID}`` of every job seen on the server."""
    return {int(key): guid for key, (_, guid, _) in state.seen(conn, "Job").items()}


def server_job_fields(
    read: JobRead, types: Mapping[int, str], jobs: Mapping[int, str]
) -> Dict[str, str]:
    job = read.job
    parent = _int(job.get("parentJobId"))
    parent_guid = jobs.get(parent, "") if parent else ""  # not yet known: the next scan
    type_id = _int(job.get("jobTypeId"))
    type_guid = types.get(type_id, "") if type_id is not None else ""
    return views.job_fields_of_server(job, read.notes, parent_guid, type_guid)


def _int(value: Any) -> Optional[int]:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def fold(
    s: Session, snapshot: Snapshot, first: bool, claims: Optional[JobClaims] = None
) -> List[str]:
    """Fold a whole scan into the shadow, in the caller's transaction.

    *claims*: the job ids other stock repositories of the state store have named (the
    GUIDs this fold gives new jobs are added to it; the caller saves them).

    :returns: the signs that the server was restored from a backup (empty if none;
        :mod:`wmsync.stock.restore`): then the scan's differences are folded as older
        versions, so the cluster's are written back.
    """
    claims = claims if claims is not None else JobClaims()
    conn = s.conn
    types = fold_config(s, snapshot.config, first)
    seen_jobs = job_guids(conn)
    signs = restore.Signs() if first else restore.signs_of_restore(s, snapshot, seen_jobs)
    went_back = bool(signs)
    open_intents = state.intents(conn)
    pending = set(state.seen(conn, "Pending"))
    # Jobs first (ids and GUIDs), then references between them are resolved.
    for job_id in sorted(snapshot.jobs):
        if job_id in seen_jobs:
            continue
        guid = open_intents.get(job_id) or _unseen_shadow_job(s, job_id, seen_jobs)
        held = s.by_id("Job", job_id, live=False) if went_back and guid is None else None
        if held is not None and held.deleted:
            # A deleted job the restore brought back: deleted again, its content logged.
            _came_back(s, job_id, held.element, snapshot.jobs[job_id], types, seen_jobs)
            seen_jobs[job_id] = held.guid
        elif guid is not None:
            adopt(s, job_id, guid, snapshot.jobs[job_id], types, seen_jobs)
            seen_jobs[job_id] = guid
        elif first and not _type_known(snapshot.jobs[job_id], types):
            # Its job type may be the cluster's under another GUID: the first run brings
            # the cluster's job types, and the job is folded by the next scan.
            state.set_seen(conn, "Pending", str(job_id), job_id, "", "")
        else:
            seen_jobs[job_id] = _new_job(
                s,
                job_id,
                snapshot.jobs[job_id],
                types,
                seen_jobs,
                claims,
                rebuilt=first or str(job_id) in pending,
            )
    rows = state.seen(conn, "Job")
    for job_id in sorted(snapshot.jobs):
        guid = seen_jobs.get(job_id)
        if guid is None:
            continue
        read = snapshot.jobs[job_id]
        if job_id in open_intents:
            # The tool's own half-done write: record it as seen, change nothing.
            record_seen(s, job_id, guid, read, types, seen_jobs)
            state.clear_intent(conn, job_id)
            continue
        old = rows.get(str(job_id))
        old_view = views.loads(old[2]) if old else {}
        set_back = None
        if went_back:
            # Any job may have been set back, also one whose edits logged no activity:
            # a difference is never taken as a successor of what the cluster holds.
            set_back = (
                "edited" if restore.edited_since_restore(s, job_id, read.activity) else "older"
            )
        if went_back:
            restore.forget_lost_records(
                s,
                job_id,
                views.hold_keys(job_id, read.holds),
                views.activity_keys(job_id, read.activity),
            )
        _fold_job(s, job_id, guid, read, types, seen_jobs, old_view, set_back=set_back)
    present = set(snapshot.jobs) | snapshot.unreadable
    for job_id, guid in seen_jobs.items():
        if job_id not in present:
            if not went_back:  # else the restore took it: the writer creates it again
                _local_delete(s, guid, _held_version(conn, job_id))
            state.forget_job(conn, job_id)
    for job_id in open_intents:
        if job_id not in snapshot.jobs and job_id not in snapshot.unreadable:
            state.clear_intent(conn, job_id)  # a create the run never got to send
    if not first:
        conn.execute("DELETE FROM stock_seen WHERE kind = 'Pending'")
    if went_back:
        restore.end_restore(s)
    state.set_meta(conn, "scanned", "1")
    return signs.lines


def _came_back(
    s: Session,
    job_id: int,
    tombstone: Element,
    read: JobRead,
    types: Mapping[int, str],
    jobs: Dict[int, str],
) -> None:
    """A job deleted in the cluster that a restore put back on the server: recorded as
    the server holds it, its content folded as an older version (the delete stays and
    the writer deletes it there again; the content is in the conflict log)."""
    fields = server_job_fields(read, types, jobs)
    jobs[job_id] = tombstone.guid
    record_seen(s, job_id, tombstone.guid, read, types, jobs)
    older = restore.restored_version(s, tombstone, fields)
    _set_held_version(s.conn, job_id, tombstone.guid, older.vv)


def _type_known(read: JobRead, types: Mapping[int, str]) -> bool:
    type_id = _int(read.job.get("jobTypeId"))
    return type_id is None or type_id in types


def _unseen_shadow_job(s: Session, job_id: int, seen_jobs: Mapping[int, str]) -> Optional[str]:
    found = s.by_id("Job", job_id)
    if found is None or found.guid in set(seen_jobs.values()):
        return None
    return found.guid


def _new_job(
    s: Session,
    job_id: int,
    read: JobRead,
    types: Mapping[int, str],
    jobs: Dict[int, str],
    claims: JobClaims,
    *,
    rebuilt: bool,
) -> str:
    """A job new to the shadow: a local job with the GUID its tags name (a job the tool
    wrote here, met again by a rebuilt shadow) or the one its repository and id derive.

    *rebuilt*: the job was already on the server when the shadow was made (a new or
    rebuilt state store) and no import claimed it: its content leaves out what each
    server sets for itself (created/started/end dates, creator), so that copies of one
    job on several stock servers agree and only real differences become conflicts.
    """
    guid = _job_guid(s.repository, job_id, read, claims, rebuilt=rebuilt)
    holder = s.by_id("Job", job_id, live=False)
    local_id: Optional[int] = job_id
    if holder is not None and holder.guid != guid:
        local_id = None  # the shadow holds another job (waiting to be written) under it
    fields = server_job_fields(read, types, jobs)
    if rebuilt:
        fields = {k: v for k, v in fields.items() if k not in views.JOB_SERVER_SET}
        if views.job_view_of_fields(server_job_fields(read, types, jobs))["closed"] == "1":
            fields["stage"] = views.STAGE_CLOSED
    if rebuilt:
        element = _rebuilt_version(s, guid, fields, local_id)
    else:
        element = s.edit("Job", guid, fields, local_id=local_id)
    jobs[job_id] = element.guid
    state.set_seen(
        s.conn,
        "Job",
        str(job_id),
        job_id,
        element.guid,
        views.dumps(views.job_view_of_fields(fields)),
    )
    _set_held_version(s.conn, job_id, element.guid, element.vv)
    _fold_children(s, job_id, element.guid, read, record=False, rebuilt=rebuilt)
    return element.guid


def _job_guid(
    repository: str, job_id: int, read: JobRead, claims: JobClaims, *, rebuilt: bool
) -> str:
    """The GUID of a job new to the shadow, matched by id (docs/design.md §10).

    A job a new shadow meets (it was there before the state store) is the job the
    cluster's other stock repositories hold under its id: the id's claim, else the GUID
    our tags on it name, else the one its id derives. A job a user created since the
    last scan is a job of its own: it takes the id's GUID unless another job has claimed
    that id (a stock server whose id block could not be set may number two jobs alike);
    then its repository and id derive it, and the writer gives it another id where its
    own is taken.
    """
    claimed = claims.get(job_id)
    tagged = _tagged_job(read)
    if rebuilt:
        guid = claimed or tagged or stock_guid("Job", str(job_id))
    elif tagged:
        guid = tagged
    elif claimed is None:
        guid = stock_guid("Job", str(job_id))
    else:
        guid = stock_guid("Job", f"{repository}:{job_id}")
    claims.claim(job_id, guid)
    return guid


def _tagged_job(read: JobRead) -> Optional[str]:
    """The job GUID the tool's tags on a job's holds or activity records name: a job the
    tool wrote there, met again by a new shadow."""
    texts = [views.text(h.get("holdComments")) for h in read.holds]
    texts += [views.text(a.get("message")) for a in read.activity]
    for text in texts:
        found = views.tagged_job(text)
        if found:
            return found
    return None


def _rebuilt_version(
    s: Session, guid: str, fields: Dict[str, str], local_id: Optional[int]
) -> Element:
    """A version counted under this shadow's own incarnation (``Name~token``), never
    under the repository's name: a new shadow's counters start again at 1, and a
    version counted ``Name:1`` would look older than what the lost state had sent, so
    a difference would be dropped silently instead of being decided as a conflict."""
    token = state.meta(s.conn, "incarnation")
    if token is None:
        token = secrets.token_hex(3)
        state.set_meta(s.conn, "incarnation", token)
    incarnation = f"{s.repository}~{token}"
    current = s.get(guid)
    vv = dict(current.element.vv) if current is not None else {}
    vv[incarnation] = vv.get(incarnation, 0) + 1
    element = Element(
        kind="Job",
        guid=guid,
        vv=vv,
        modified=s.store.now_ms(),
        origin=s.repository,
        fields=fields,
        local_id=current.local_id if current is not None else local_id,
    )
    s.write(element, "")
    return element


def _fold_job(
    s: Session,
    job_id: int,
    guid: str,
    read: JobRead,
    types: Mapping[int, str],
    jobs: Mapping[int, str],
    old_view: Mapping[str, str],
    *,
    set_back: Optional[str] = None,
) -> None:
    """Fold one job the shadow has seen before. *set_back* (a restore set the job back,
    :mod:`wmsync.stock.restore`): ``"older"`` or ``"edited"`` (users worked on it since)."""
    fields = server_job_fields(read, types, jobs)
    view = views.job_view_of_fields(fields)
    if view != old_view:
        current = s.get(guid)
        merged: Dict[str, str] = dict(current.fields) if current and not current.deleted else {}
        for key in (*views.JOB_UPDATABLE, *views.JOB_SERVER_SET, "parentJob", "jobType", "notes"):
            merged.pop(key, None)
        merged.update(fields)
        base = _held_version(s.conn, job_id)
        if set_back and current is not None:
            # Never a successor of the versions the restore lost: concurrent with them.
            older = restore.restored_version(
                s, current.element, merged, edited=set_back == "edited"
            )
            state.set_seen(s.conn, "Job", str(job_id), job_id, guid, views.dumps(view))
            _set_held_version(s.conn, job_id, guid, older.vv)
            _fold_children(s, job_id, guid, read, record=False)
            return
        if current is None or base is None or dict(current.element.vv) == base:
            element = s.edit("Job", guid, merged)
        else:
            element = _edit_over_unwritten(s, current.element, base, merged)
        state.set_seen(s.conn, "Job", str(job_id), job_id, guid, views.dumps(view))
        _set_held_version(s.conn, job_id, guid, element.vv)
    _fold_children(s, job_id, guid, read, record=False)


def _held_version(conn: Any, job_id: int) -> Optional[Dict[str, int]]:
    """The version vector of the version the server was last seen holding."""
    row = state.seen_of_job(conn, "Version", job_id).get(str(job_id))
    return {str(k): int(v) for k, v in json.loads(row[2]).items()} if row else None


def _set_held_version(conn: Any, job_id: int, guid: str, vv: Mapping[str, int]) -> None:
    state.set_seen(conn, "Version", str(job_id), job_id, guid, json.dumps(dict(vv), sort_keys=True))


def _edit_over_unwritten(
    s: Session,
    current: Element,
    base: Mapping[str, int],
    fields: Dict[str, str],
    *,
    deleted: bool = False,
) -> Element:
    """A user's edit on the server of a job whose shadow version was not yet written
    there (it waits, or a run was writing it): the edit is made on the version the
    server held, so it is concurrent with the unwritten one, and the merge rule decides
    (the loser goes to the conflict log) instead of the edit silently replacing it."""
    own = max(current.vv.get(s.repository, 0), base.get(s.repository, 0)) + 1
    vv = dict(base)
    vv[s.repository] = own
    edit = Element(
        kind="Job",
        guid=current.guid,
        vv=vv,
        modified=s.store.now_ms(),
        origin=s.repository,
        fields={} if deleted else fields,
        deleted=deleted,
        local_id=current.local_id,
    )
    importer = Importer(s, "")
    importer.add([edit])
    importer.finish()
    found = s.get(current.guid)
    return found.element if found is not None else edit


#: How close (ms) an untagged record by the tool's user must be to one of its tagged
#: writes to be taken as a side effect of it, in a rebuilt shadow.
SIDE_EFFECT_WINDOW_MS = 120_000


def _side_effect_marks(read: JobRead) -> List[Tuple[str, int]]:
    """(user, date) of every tagged record of a job: the tool's own writes."""
    marks = []
    for record in read.activity:
        if views.tagged_guid(views.text(record.get("message"))):
            date = _int(record.get("date"))
            if date is not None:
                marks.append((views.text(record.get("user")), date))
    return marks


def _near(record: Mapping[str, Any], marks: List[Tuple[str, int]]) -> bool:
    user, date = views.text(record.get("user")), _int(record.get("date"))
    return date is not None and any(
        user == who and abs(date - when) <= SIDE_EFFECT_WINDOW_MS for who, when in marks
    )


def _fold_children(
    s: Session, job_id: int, guid: str, read: JobRead, record: bool, rebuilt: bool = False
) -> None:
    """Holds and activity records of one job.

    *record* (the tool's own writes, or a job being adopted): a hold already mapped only
    gets its view recorded, and an untagged activity record the shadow cannot match is a
    side effect of the tool's writes, not a user's record. Otherwise (a scan) changed
    holds are local edits and new records are local records.

    *rebuilt* (a job a new shadow meets for the first time): an untagged record made by
    the tool's user close to one of its tagged writes is taken as a side effect of the
    tool's earlier writes; any other is a user's record and gets the GUID its
    repository, job and content derive, the one the lost state gave it.
    """
    marks = _side_effect_marks(read) if rebuilt else []
    conn = s.conn
    seen_holds = state.seen_of_job(conn, "Hold", job_id)
    free_holds = _unmapped(s, "Hold", guid)
    for hold, key in zip(read.holds, views.hold_keys(job_id, read.holds)):
        view = views.hold_view_of_server(hold)
        if key in seen_holds:
            _, hold_guid, old = seen_holds[key]
            if views.loads(old) != view:
                if hold_guid and not record:
                    _edit_hold(s, hold_guid, hold, view)
                state.set_seen(conn, "Hold", key, job_id, hold_guid, views.dumps(view))
            continue
        found = views.tagged_guid(views.text(hold.get("holdComments")))
        derived = stock_guid("Hold", f"{s.repository}:{hold.get('id')}")
        hold_guid = found if found is not None else ""
        if not hold_guid and s.get(derived) is not None:
            hold_guid = derived
        if not hold_guid:
            hold_guid = _match(free_holds, views.hold_view_of_fields, view) or ""
        if not hold_guid:
            hold_guid = s.edit("Hold", derived, _hold_fields(guid, hold)).guid
        state.set_seen(conn, "Hold", key, job_id, hold_guid, views.dumps(view))
    seen_acts = set(state.seen_of_job(conn, "Activity", job_id))
    free_acts = _unmapped(s, "Activity", guid)
    for record_, key in zip(read.activity, views.activity_keys(job_id, read.activity)):
        if key in seen_acts:
            continue
        message = views.text(record_.get("message"))
        type_text = views.text(record_.get("type"))
        act_guid = views.tagged_guid(message)
        derived = stock_guid("Activity", f"{s.repository}:{key}")
        if act_guid is None and s.get(derived) is not None:
            act_guid = derived
        if act_guid is None:
            act_guid = _match(free_acts, _activity_view, {"type": type_text, "message": message})
        if act_guid is None and not record and not (marks and _near(record_, marks)):
            act_guid = s.edit(
                "Activity",
                derived,
                {
                    "job": guid,
                    "type": type_text,
                    "user": views.text(record_.get("user")),
                    "date": views.text(record_.get("date")),
                    "message": message,
                },
            ).guid
        state.set_seen(conn, "Activity", key, job_id, act_guid or "", "")


def _unmapped(s: Session, kind: str, job_guid: str) -> List[Any]:
    mapped = state.mapped_guids(s.conn, kind)
    return [e for e in s.of_job(kind, job_guid) if e.guid not in mapped]


def _activity_view(fields: Mapping[str, str]) -> Dict[str, str]:
    return {"type": fields.get("type", ""), "message": fields.get("message", "")}


def _match(candidates: List[Any], view_of: Any, view: Mapping[str, str]) -> Optional[str]:
    """Take the first candidate whose view is *view* (and remove it from the list)."""
    for i, element in enumerate(candidates):
        if view_of(element.fields) == view:
            del candidates[i]
            return str(element.guid)
    return None


def _hold_fields(job_guid: str, hold: Mapping[str, Any]) -> Dict[str, str]:
    fields = {
        "job": job_guid,
        "type": views.text(hold.get("type")),
        "heldBy": views.text(hold.get("heldBy")),
        "holdDate": views.text(hold.get("holdDate")),
        "holdComments": views.strip_tag(views.text(hold.get("holdComments"))),
        "releasedBy": views.text(hold.get("releasedBy")),
        "releaseDate": views.text(hold.get("releaseDate")),
        "releaseComments": views.strip_tag(views.text(hold.get("releaseComments"))),
    }
    return {k: v for k, v in fields.items() if v != ""}


def _edit_hold(s: Session, guid: str, hold: Mapping[str, Any], view: Mapping[str, str]) -> None:
    current = s.get(guid)
    if current is None:
        return
    fields = dict(current.fields) if not current.deleted else {}
    fields["type"] = view["type"]
    fields["holdComments"] = view["comments"]
    if view["released"] == "1":
        for key in ("releasedBy", "releaseDate", "releaseComments"):
            value = views.strip_tag(views.text(hold.get(key)))
            fields[key] = value
    else:
        for key in ("releasedBy", "releaseDate", "releaseComments"):
            fields.pop(key, None)
    s.edit("Hold", guid, {k: v for k, v in fields.items() if v != ""})


def _local_delete(s: Session, guid: str, held: Optional[Dict[str, int]]) -> None:
    """A job gone from the server: a tombstone for it (over a version not yet written
    there: decided by the merge rule, as an edit is). Its holds and activity records
    follow it, as the session's delete and the importer make them (docs/design.md §4)."""
    current = s.get(guid)
    if current is None or current.deleted:
        return
    if held is not None and dict(current.element.vv) != held:
        _edit_over_unwritten(s, current.element, held, {}, deleted=True)
    else:
        s.delete(guid)


def record_seen(
    s: Session,
    job_id: int,
    guid: str,
    read: JobRead,
    types: Mapping[int, str],
    jobs: Mapping[int, str],
) -> None:
    """Record a job as the server now holds it, editing nothing: the job's view, its
    holds (tagged ones and holds the shadow already maps), and its activity records
    (tagged ones map to their GUID; untagged ones the shadow cannot match are side
    effects of the tool's writes)."""
    conn = s.conn
    fields = server_job_fields(read, types, jobs)
    state.set_seen(
        conn, "Job", str(job_id), job_id, guid, views.dumps(views.job_view_of_fields(fields))
    )
    current = s.get(guid)
    _set_held_version(conn, job_id, guid, current.element.vv if current is not None else {})
    _fold_children(s, job_id, guid, read, record=True)


def adopt(
    s: Session,
    job_id: int,
    guid: str,
    read: JobRead,
    types: Mapping[int, str],
    jobs: Dict[int, str],
) -> None:
    """Take an unseen server job as the shadow's job *guid* (matched by id)."""
    jobs[job_id] = guid
    record_seen(s, job_id, guid, read, types, jobs)
