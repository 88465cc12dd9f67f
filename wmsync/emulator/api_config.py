"""Handlers of the service root, configuration properties, job types, users and groups.

Every handler is a plain function ``handler(ctx, call, **path_values)`` returning the
JSON answer; :mod:`~wmsync.emulator.routes` names them. The ``*_with_identity`` and
``*_create``/``*_update`` handlers of configuration are the extended server's own
([ours] in ``docs/protocol.md``); stock mode leaves them out of its routes.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from wmsync.model import guid_for_name
from wmsync.repository import catalog
from wmsync.repository.store import Session, StoredElement

from . import shapes
from .call import Call
from .context import Context
from .envelope import BadRequest, Conflict, NotFound
from .limits import checked_text

#: The configuration property that sets where new job ids start (Esri, 10.3.1+).
JOB_ID_START_VALUE = "JOB_ID_START_VALUE"
_LARGEST_JOB_ID = 2**31 - 1

# -- service root and configuration properties --------------------------------------


def _config_properties(s: Session, repository: str) -> Dict[str, str]:
    own = s.node(repository)
    if own is None or own.job_id_start is None:
        return {}
    return {JOB_ID_START_VALUE: str(own.job_id_start)}


def root(ctx: Context, call: Call) -> Dict[str, Any]:
    """``GET <root>``: Esri's keys."""
    with ctx.store.reading() as s:
        return shapes.service_info(s, ctx.repository, _config_properties(s, ctx.repository))


def root_with_name(ctx: Context, call: Call) -> Dict[str, Any]:
    """``GET <root>`` of the extended server: Esri's keys plus the repository ``name``."""
    return {"name": ctx.repository, **root(ctx, call)}


def update_config_properties(ctx: Context, call: Call) -> Dict[str, Any]:
    """``updateConfigProperties``: ``properties`` (a JSON object) or flat parameters.

    Only ``JOB_ID_START_VALUE`` does anything here: new jobs are numbered from it (kept
    as the start of this repository's own id block, the numbering jobs/create uses).
    Other known-looking keys are accepted and ignored, as they change nothing the
    emulator serves.
    """
    call.user()
    values: Dict[str, Any] = {}
    text = call.structured("properties")
    if text:
        try:
            loaded = json.loads(text)
        except ValueError:
            raise BadRequest(
                "Invalid value for parameter properties (JSON)", ["properties"]
            ) from None
        if not isinstance(loaded, dict):
            raise BadRequest(
                "Invalid value for parameter properties (a JSON object)", ["properties"]
            )
        values.update(loaded)
    if JOB_ID_START_VALUE not in values and call.text(JOB_ID_START_VALUE) is not None:
        values[JOB_ID_START_VALUE] = call.text(JOB_ID_START_VALUE)
    if JOB_ID_START_VALUE in values:
        start = shapes.parse_int(JOB_ID_START_VALUE, values[JOB_ID_START_VALUE])
        if start is None or not 1 <= start < _LARGEST_JOB_ID:
            raise BadRequest(
                f"Invalid value for parameter {JOB_ID_START_VALUE}", [JOB_ID_START_VALUE]
            )
        own = ctx.store.node(ctx.repository)
        block = own.job_id_block if own is not None and own.job_id_block else None
        ctx.store.update_node(
            ctx.repository,
            job_id_start=start,
            job_id_block=block or _LARGEST_JOB_ID - start,
        )
    return {"success": True}


# -- job types ----------------------------------------------------------------------


def _job_type(s: Session, type_id: int) -> StoredElement:
    found = s.by_id("JobType", type_id)
    if found is None:
        raise NotFound(f"Job type {type_id} does not exist")
    return found


def job_types(ctx: Context, call: Call) -> Dict[str, Any]:
    """``GET /jobTypes`` and ``/visibleJobTypes``."""
    with ctx.store.reading() as s:
        return {"jobTypes": [shapes.job_type(t) for t in s.live("JobType")]}


def job_type(ctx: Context, call: Call, type_id: int) -> Dict[str, Any]:
    """``GET /jobTypes/{id}``."""
    with ctx.store.reading() as s:
        return shapes.job_type(_job_type(s, type_id))


def job_types_with_identity(ctx: Context, call: Call) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        return {
            "jobTypes": [{**shapes.job_type(t), **shapes.identity(t)} for t in s.live("JobType")]
        }


def job_type_with_identity(ctx: Context, call: Call, type_id: int) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        found = _job_type(s, type_id)
        return {**shapes.job_type(found), **shapes.identity(found)}


def _job_type_fields(call: Call, fields: Dict[str, str]) -> Dict[str, str]:
    for key, name in shapes.JOB_TYPE_KEYS.items():
        value = call.text(key)
        if value is None:
            continue
        if name in shapes.JOB_TYPE_NUMBERS:
            parsed = shapes.parse_int(key, value)
            if parsed is None:
                continue
            value = str(parsed)
        if name == "defaultAssignedTo":
            value = shapes.user_name(value)
        fields[name] = value
    return fields


def _check_type_name(s: Session, name: str, guid: Optional[str]) -> None:
    if not name.strip():
        raise BadRequest("Missing required parameter: name", ["name"])
    for other in s.live("JobType"):
        if other.fields.get("name") == name and other.guid != guid:
            raise Conflict(f"A job type named {name!r} already exists")


def job_type_create(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    call.required("name")
    with ctx.store.atomic() as s:
        fields = _job_type_fields(call, {"created": str(ctx.store.now_ms())})
        _check_type_name(s, fields["name"], None)
        created = s.edit("JobType", None, fields)
    return {"id": created.local_id, "guid": created.guid}


def job_type_update(ctx: Context, call: Call, type_id: int) -> Dict[str, Any]:
    call.user()
    with ctx.store.atomic() as s:
        current = _job_type(s, type_id)
        fields = _job_type_fields(call, dict(current.fields))
        _check_type_name(s, fields.get("name", ""), current.guid)
        if fields != dict(current.fields):
            s.edit("JobType", current.guid, fields)
    return {"success": True}


# -- users and groups ---------------------------------------------------------------


def users(ctx: Context, call: Call) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        found = sorted(s.live("User"), key=lambda u: u.fields.get("userName", ""))
        return {"users": [shapes.user(u) for u in found]}


def _user(s: Session, name: str) -> StoredElement:
    found = s.get_live(guid_for_name("User", shapes.user_name(name)), "User")
    if found is None:
        raise NotFound(f"User {shapes.user_name(name)} does not exist")
    return found


def user(ctx: Context, call: Call, user_name: str) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        found = _user(s, user_name)
        name = found.fields.get("userName", "")
        groups_of = [
            shapes.group(g)
            for g in s.live("Group")
            if name in shapes.decode_users(g.fields.get("users"))
        ]
        return {
            **shapes.user(found),
            "privileges": catalog.PRIVILEGES,
            "groups": groups_of,
            "userQueries": {},
        }


def user_create(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    name = shapes.user_name(call.required("userName").strip())
    guid = guid_for_name("User", name)
    with ctx.store.atomic() as s:
        if s.get_live(guid) is not None:
            raise Conflict(f"User {name} already exists")
        fields = {"userName": name, "fullName": call.text("fullName") or name}
        if call.text("email"):
            fields["email"] = call.text("email") or ""
        s.edit("User", guid, fields)
    return {"id": name, "userName": name}


def user_update(ctx: Context, call: Call, user_name: str) -> Dict[str, Any]:
    call.user()
    with ctx.store.atomic() as s:
        current = _user(s, user_name)
        fields = dict(current.fields)
        for key in ("fullName", "email"):
            value = call.text(key)
            if value is not None:
                fields[key] = value
        if fields != dict(current.fields):
            s.edit("User", current.guid, fields)
    return {"success": True}


def groups(ctx: Context, call: Call) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        return {"groups": [shapes.group(g) for g in s.live("Group")]}


def _group(s: Session, group_id: int) -> StoredElement:
    found = s.by_id("Group", group_id)
    if found is None:
        raise NotFound(f"Group {group_id} does not exist")
    return found


def group(ctx: Context, call: Call, group_id: int) -> Dict[str, Any]:
    with ctx.store.reading() as s:
        return shapes.group(_group(s, group_id))


def _group_users(call: Call) -> Optional[str]:
    text = call.text("users")
    if text is None:
        return None
    names = [shapes.user_name(n.strip()) for n in text.split(",") if n.strip()]
    return shapes.encode_users(names)


def group_create(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    name = call.required("name").strip()
    guid = guid_for_name("Group", name)
    with ctx.store.atomic() as s:
        if s.get_live(guid) is not None:
            raise Conflict(f"Group {name} already exists")
        fields = {"name": name, "description": call.text("description") or ""}
        members = _group_users(call)
        if members:
            fields["users"] = members
        created = s.edit("Group", guid, fields)
    return {"id": created.local_id}


def group_update(ctx: Context, call: Call, group_id: int) -> Dict[str, Any]:
    call.user()
    with ctx.store.atomic() as s:
        current = _group(s, group_id)
        fields = dict(current.fields)
        name = call.text("name")
        if name is not None and name.strip() != fields.get("name"):
            raise BadRequest("A group's name is its identity and cannot change", ["name"])
        description = call.text("description")
        if description is not None:
            fields["description"] = description
        members = _group_users(call)
        if members is not None:
            fields["users"] = checked_text("users", members) or ""
        fields = {k: v for k, v in fields.items() if v != "" or k == "description"}
        if fields != dict(current.fields):
            s.edit("Group", current.guid, fields)
    return {"success": True}
