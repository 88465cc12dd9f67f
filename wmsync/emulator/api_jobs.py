"""Handlers of jobs, their holds, notes and activity.

Every handler is a plain function ``handler(ctx, call, **path_values)`` returning the
JSON answer; :mod:`~wmsync.emulator.routes` names them. Every change to a job logs an
activity record with the server's time and the calling ``user``, as Workflow Manager
does (create, update, close, reopen, assign, hold, release, notes).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from wmsync.repository import catalog
from wmsync.repository.store import Session, StoredElement

from . import shapes
from .call import Call
from .context import Context
from .envelope import BadRequest, Conflict, NotFound
from .limits import checked_text


# Job update: request key -> (field, parser). Parsers turn a value into field text.
def _text(name: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise BadRequest(f"Invalid value for parameter {name}")
    return checked_text(name, str(value)) or ""


def _int_text(name: str, value: Any) -> Optional[str]:
    parsed = shapes.parse_int(name, value)
    return None if parsed is None else str(parsed)


def _user_text(name: str, value: Any) -> str:
    return shapes.user_name(_text(name, value))


_Parser = Callable[[str, Any], Optional[str]]
_JOB_KEYS: Dict[str, Tuple[str, _Parser]] = {
    "name": ("name", _text),
    "description": ("description", _text),
    "ownedBy": ("ownedBy", _user_text),
    "assignedTo": ("assignedTo", _user_text),
    "assignedType": ("assignedType", _int_text),
    "priority": ("priority", _int_text),
    "status": ("status", _int_text),
    "stage": ("stage", _int_text),
    "percent": ("percentageComplete", _int_text),
    "percentageComplete": ("percentageComplete", _int_text),
    "startDate": ("startDate", _int_text),
    "dueDate": ("dueDate", _int_text),
    "startedDate": ("startedDate", _int_text),
    "endDate": ("endDate", _int_text),
    "dataWorkspaceId": ("dataWorkspaceId", _text),
    "parentVersion": ("parentVersion", _text),
    "versionName": ("versionName", _text),
}
#: What Esri's ``jobs/{id}/update`` documents as settable.
_DOCUMENTED_JOB_KEYS = {
    k: v for k, v in _JOB_KEYS.items() if k not in ("stage", "startedDate", "endDate")
}


# -- jobs ---------------------------------------------------------------------------


def _job(s: Session, job_id: int) -> StoredElement:
    found = s.by_id("Job", job_id)
    if found is None:
        raise NotFound(f"Job {job_id} does not exist")
    return found


def jobs(ctx: Context, call: Call) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        return {"jobIds": s.live_ids("Job")}


def job(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    """``GET /jobs/{id}``: Esri's keys."""
    with ctx.store.reading() as s:
        return shapes.job(s, _job(s, job_id))


def job_with_identity(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    """``GET /jobs/{id}`` of the extended server: plus ``guid``, ``modified``, ``origin``."""
    with ctx.store.reading() as s:
        found = _job(s, job_id)
        return {**shapes.job(s, found), **shapes.identity(found)}


def _reference(s: Session, kind: str, name: str, local_id: Optional[int]) -> str:
    if local_id is None:
        return ""
    found = s.by_id(kind, local_id)
    if found is None:
        raise BadRequest(
            f"Invalid value for parameter {name}: {kind} {local_id} does not exist", [name]
        )
    return found.guid


def jobs_create(ctx: Context, call: Call) -> Dict[str, Any]:
    user = call.user()
    type_id = call.integer("jobTypeId")
    if type_id is None:
        raise BadRequest("Missing required parameter: jobTypeId", ["jobTypeId"])
    count = call.integer("numJobs") or 1
    if not 1 <= count <= 10000:
        raise BadRequest("Invalid value for parameter numJobs", ["numJobs"])
    explicit = call.integer("id")
    if explicit is not None and (count != 1 or explicit < 1):
        raise BadRequest("Invalid value for parameter id (one job, id >= 1)", ["id"])
    now = str(ctx.store.now_ms())
    with ctx.store.atomic() as s:
        job_type = s.by_id("JobType", type_id)
        if job_type is None:
            raise BadRequest(
                f"Invalid value for parameter jobTypeId: job type {type_id} does not exist",
                ["jobTypeId"],
            )
        defaults = job_type.fields
        parent = _reference(s, "Job", "parentJobId", call.integer("parentJobId"))
        if explicit is not None and s.id_taken("Job", explicit):
            raise Conflict(f"Job id {explicit} is already taken")
        ids: List[int] = []
        for _ in range(count):
            local_id = explicit if explicit is not None else s.next_id("Job")
            name = call.text("name") or defaults.get("defaultJobName") or "Job [JOB:ID]"
            fields: Dict[str, Optional[str]] = {
                "name": name.replace("[JOB:ID]", str(local_id)),
                "description": call.text("description") or defaults.get("defaultDescription"),
                "createdBy": user,
                "ownedBy": shapes.user_name(call.text("ownedBy") or user),
                "assignedType": _int_text("assignedType", call.text("assignedType"))
                or defaults.get("defaultAssignedType")
                or "0",
                "assignedTo": shapes.user_name(
                    call.text("assignedTo") or defaults.get("defaultAssignedTo") or ""
                )
                or None,
                "jobType": job_type.guid,
                "parentJob": parent or None,
                "priority": _int_text("priority", call.text("priority"))
                or defaults.get("defaultPriority")
                or "0",
                "stage": str(catalog.STAGE_CREATED),
                "status": str(catalog.STATUS_CREATED),
                "percentageComplete": "0",
                "createdDate": now,
                "startDate": None
                if call.boolean("clearStartDate")
                else _int_text("startDate", call.text("startDate")),
                "dueDate": None
                if call.boolean("clearDueDate")
                else _int_text("dueDate", call.text("dueDate")),
                "dataWorkspaceId": call.text("dataWorkspaceId")
                or defaults.get("defaultDataWorkspaceId")
                or None,
                "parentVersion": call.text("parentVersion")
                or defaults.get("defaultParentVersion")
                or None,
            }
            created = s.edit("Job", None, fields, local_id=local_id)
            s.log_activity(created.guid, "CreateJob", user, f"Job {local_id} created")
            ids.append(local_id)
    return {"jobIds": ids}


def _update_values(call: Call) -> Dict[str, Any]:
    """The job update's values: ``properties`` JSON first, flat parameters fill the
    keys it leaves absent or null."""
    values: Dict[str, Any] = {}
    text = call.structured("properties")
    if text:
        try:
            loaded = json.loads(text)
        except ValueError:
            raise BadRequest("Invalid value for parameter properties (JSON)") from None
        if not isinstance(loaded, dict):
            raise BadRequest("Invalid value for parameter properties (a JSON object)")
        values.update({k: v for k, v in loaded.items() if v is not None})
    for key in (*_JOB_KEYS, "jobTypeId", "parentJobId", "clearStartDate", "clearDueDate"):
        if key not in values and call.text(key) is not None:
            values[key] = call.text(key)
    return values


def job_update(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    """``jobs/{id}/update`` of the extended server: also stage, startedDate, endDate."""
    return _update_job(ctx, call, job_id, _JOB_KEYS)


def job_update_documented(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    """``jobs/{id}/update`` as Esri documents it: stage, startedDate and endDate are not
    settable (the server sets them), so they are ignored like any unknown key."""
    return _update_job(ctx, call, job_id, _DOCUMENTED_JOB_KEYS)


def _update_job(
    ctx: Context, call: Call, job_id: int, keys: Mapping[str, Tuple[str, _Parser]]
) -> Dict[str, Any]:
    user = call.user()
    values = _update_values(call)
    with ctx.store.atomic() as s:
        current = _job(s, job_id)
        fields: Dict[str, Optional[str]] = dict(current.fields)
        for key, (name, parse) in keys.items():
            if key in values:
                parsed = parse(key, values[key])
                if parsed is not None:
                    fields[name] = parsed
        if "jobTypeId" in values:
            type_id = shapes.parse_int("jobTypeId", values["jobTypeId"])
            if type_id is not None:
                fields["jobType"] = _reference(s, "JobType", "jobTypeId", type_id)
        if "parentJobId" in values:
            parent_id = shapes.parse_int("parentJobId", values["parentJobId"])
            if parent_id is not None:
                if parent_id == job_id:
                    raise BadRequest("A job cannot be its own parent", ["parentJobId"])
                fields["parentJob"] = _reference(s, "Job", "parentJobId", parent_id)
        if shapes.parse_bool("clearStartDate", values.get("clearStartDate")):
            fields["startDate"] = None
        if shapes.parse_bool("clearDueDate", values.get("clearDueDate")):
            fields["dueDate"] = None
        _change_job(s, current, fields, user, "UpdateJob")
    return {"success": True}


def _change_job(
    s: Session,
    current: StoredElement,
    fields: Mapping[str, Optional[str]],
    user: str,
    activity: str,
    message: Optional[str] = None,
) -> bool:
    """A local edit of a job plus its activity record; nothing if nothing changed."""
    clean = {k: v for k, v in fields.items() if v is not None}
    if clean == dict(current.fields):
        return False
    if message is None:
        changed = sorted(
            k for k in set(clean) | set(current.fields) if clean.get(k) != current.fields.get(k)
        )
        message = f"Job {current.local_id} updated: {', '.join(changed)}"
    s.edit("Job", current.guid, clean)
    s.log_activity(current.guid, activity, user, message)
    return True


def _job_ids(call: Call, job_id: Optional[int]) -> List[int]:
    return [job_id] if job_id is not None else call.ids("jobs")


def jobs_delete(ctx: Context, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
    call.user()
    ids = _job_ids(call, job_id)
    delete_history = call.boolean("deleteHistory", False)
    with ctx.store.atomic() as s:
        for one in ids:
            current = _job(s, one)
            if delete_history:  # deleted on purpose: they stay deleted if the job returns
                for record in s.of_job("Activity", current.guid):
                    s.delete(record.guid)
            # Its holds and (other) activity records are deleted with it, keeping their
            # content, and come back if a newer concurrent edit revives the job
            # (docs/design.md §4).
            s.delete(current.guid)
    return {"success": True}


def jobs_close(ctx: Context, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
    user = call.user()
    with ctx.store.atomic() as s:
        for one in _job_ids(call, job_id):
            current = _job(s, one)
            if shapes.number(current.fields.get("stage")) == catalog.STAGE_CLOSED:
                raise Conflict(f"Job {one} is already closed")
            fields: Dict[str, Optional[str]] = dict(current.fields)
            fields.update(
                stage=str(catalog.STAGE_CLOSED),
                status=str(catalog.STATUS_CLOSED),
                endDate=str(ctx.store.now_ms()),
            )
            _change_job(s, current, fields, user, "CloseJob", f"Job {one} closed")
    return {"success": True}


def jobs_reopen(ctx: Context, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
    user = call.user()
    with ctx.store.atomic() as s:
        for one in _job_ids(call, job_id):
            current = _job(s, one)
            if shapes.number(current.fields.get("stage")) != catalog.STAGE_CLOSED:
                raise Conflict(f"Job {one} is not closed")
            fields: Dict[str, Optional[str]] = dict(current.fields)
            fields.update(
                stage=str(catalog.STAGE_READY),
                status=str(catalog.STATUS_READY),
                endDate=None,
            )
            _change_job(s, current, fields, user, "ReopenJob", f"Job {one} reopened")
    return {"success": True}


def jobs_assign(ctx: Context, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
    user = call.user()
    assigned_type = call.integer("assignedType")
    if assigned_type is None:
        raise BadRequest("Missing required parameter: assignedType", ["assignedType"])
    assigned_to = shapes.user_name(call.text("assignedTo") or "")
    with ctx.store.atomic() as s:
        for one in _job_ids(call, job_id):
            current = _job(s, one)
            fields: Dict[str, Optional[str]] = dict(current.fields)
            fields.update(assignedType=str(assigned_type), assignedTo=assigned_to or None)
            _change_job(
                s,
                current,
                fields,
                user,
                "AssignJob",
                f"Job {one} assigned to {assigned_to or 'nobody'}",
            )
    return {"success": True}


def jobs_unassign(ctx: Context, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
    user = call.user()
    with ctx.store.atomic() as s:
        for one in _job_ids(call, job_id):
            current = _job(s, one)
            fields: Dict[str, Optional[str]] = dict(current.fields)
            fields.update(assignedType="0", assignedTo=None)
            _change_job(s, current, fields, user, "UnassignJob", f"Job {one} unassigned")
    return {"success": True}


# -- holds, notes, activity ---------------------------------------------------------


def holds(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        current = _job(s, job_id)
        return {"holds": [shapes.hold(h) for h in s.of_job("Hold", current.guid)]}


def hold_create(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    user = call.user()
    hold_type = call.integer("type")
    if hold_type is None:
        raise BadRequest("Missing required parameter: type", ["type"])
    if hold_type not in [t["id"] for t in catalog.HOLD_TYPES]:
        raise BadRequest(f"Invalid value for parameter type: {hold_type}", ["type"])
    with ctx.store.atomic() as s:
        current = _job(s, job_id)
        fields = {
            "job": current.guid,
            "type": str(hold_type),
            "heldBy": user,
            "holdDate": str(ctx.store.now_ms()),
            "holdComments": call.text("comments") or None,
        }
        hold = s.edit("Hold", None, fields)
        s.log_activity(current.guid, "AddHold", user, f"Hold {hold.local_id} added")
    return {"holdId": hold.local_id}


def hold_release(ctx: Context, call: Call, job_id: int, hold_id: int) -> Dict[str, Any]:
    user = call.user()
    with ctx.store.atomic() as s:
        current = _job(s, job_id)
        hold = s.by_id("Hold", hold_id)
        if hold is None or hold.fields.get("job") != current.guid:
            raise NotFound(f"Hold {hold_id} of job {job_id} does not exist")
        if hold.fields.get("releaseDate"):
            raise Conflict(f"Hold {hold_id} is already released")
        fields: Dict[str, Optional[str]] = dict(hold.fields)
        fields.update(
            releasedBy=user,
            releaseDate=str(ctx.store.now_ms()),
            releaseComments=call.text("comments") or None,
        )
        s.edit("Hold", hold.guid, fields)
        s.log_activity(current.guid, "ReleaseHold", user, f"Hold {hold_id} released")
    return {"success": True}


def notes(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        return {"notes": _job(s, job_id).fields.get("notes", "")}


def notes_update(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    user = call.user()
    notes = call.text("notes") or None
    with ctx.store.atomic() as s:
        current = _job(s, job_id)
        fields: Dict[str, Optional[str]] = dict(current.fields)
        fields["notes"] = notes
        _change_job(s, current, fields, user, "UpdateNotes", "Notes updated")
    return {"success": True}


def activity(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        current = _job(s, job_id)
        return {"activity": [shapes.activity(a) for a in s.of_job("Activity", current.guid)]}


def log_action(ctx: Context, call: Call, job_id: int) -> Dict[str, Any]:
    user = call.user()
    type_id = call.integer("type")
    if type_id is None:
        raise BadRequest("Missing required parameter: type", ["type"])
    with ctx.store.atomic() as s:
        current = _job(s, job_id)
        s.add_activity(current.guid, type_id, user, call.text("comments") or "")
    return {"success": True}
