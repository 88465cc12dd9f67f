"""The service root and configuration (job types), users and groups: handlers of
:class:`~wmsync.emulator.app.WMServerApp` (a base class of it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from wmsync.model import guid_for_name
from wmsync.repository import catalog
from wmsync.repository.store import Session, Store, StoredElement

from . import shapes
from .envelope import BadRequest, Conflict, NotFound
from .routes import Call


class ConfigApi:
    """The service root, job types, users and groups (a base class of
    :class:`~wmsync.emulator.app.WMServerApp`)."""

    if TYPE_CHECKING:  # what the handlers use of WMServerApp, for the type checker
        store: Store

        @property
        def repository(self) -> str: ...

    # -- service root and configuration -----------------------------------------------

    def on_root(self, call: Call) -> Dict[str, Any]:
        with self.store.reading() as s:
            return shapes.service_info(s, self.repository)

    def _job_type(self, s: Session, type_id: int) -> StoredElement:
        found = s.by_id("JobType", type_id)
        if found is None:
            raise NotFound(f"Job type {type_id} does not exist")
        return found

    def on_job_types(self, call: Call) -> Dict[str, Any]:
        with self.store.reading() as s:
            return {"jobTypes": [shapes.job_type(t) for t in s.live("JobType")]}

    on_visible_job_types = on_job_types

    def on_job_type(self, call: Call, type_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            return shapes.job_type(self._job_type(s, type_id))

    def _job_type_fields(self, call: Call, fields: Dict[str, str]) -> Dict[str, str]:
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

    @staticmethod
    def _check_type_name(s: Session, name: str, guid: Optional[str]) -> None:
        if not name.strip():
            raise BadRequest("Missing required parameter: name", ["name"])
        for other in s.live("JobType"):
            if other.fields.get("name") == name and other.guid != guid:
                raise Conflict(f"A job type named {name!r} already exists")

    def on_job_type_create(self, call: Call) -> Dict[str, Any]:
        call.user()
        call.required("name")
        with self.store.atomic() as s:
            fields = self._job_type_fields(call, {"created": str(self.store.now_ms())})
            self._check_type_name(s, fields["name"], None)
            created = s.edit("JobType", None, fields)
        return {"id": created.local_id, "guid": created.guid}

    def on_job_type_update(self, call: Call, type_id: int) -> Dict[str, Any]:
        call.user()
        with self.store.atomic() as s:
            current = self._job_type(s, type_id)
            fields = self._job_type_fields(call, dict(current.fields))
            self._check_type_name(s, fields.get("name", ""), current.guid)
            if fields != dict(current.fields):
                s.edit("JobType", current.guid, fields)
        return {"success": True}

    # -- users and groups ---------------------------------------------------------------

    def on_users(self, call: Call) -> Dict[str, Any]:
        with self.store.reading() as s:
            users = sorted(s.live("User"), key=lambda u: u.fields.get("userName", ""))
            return {"users": [shapes.user(u) for u in users]}

    def _user(self, s: Session, name: str) -> StoredElement:
        found = s.get_live(guid_for_name("User", shapes.user_name(name)), "User")
        if found is None:
            raise NotFound(f"User {shapes.user_name(name)} does not exist")
        return found

    def on_user(self, call: Call, user_name: str) -> Dict[str, Any]:
        with self.store.reading() as s:
            found = self._user(s, user_name)
            name = found.fields.get("userName", "")
            groups = [
                shapes.group(g)
                for g in s.live("Group")
                if name in shapes.decode_users(g.fields.get("users"))
            ]
            return {
                **shapes.user(found),
                "privileges": catalog.PRIVILEGES,
                "groups": groups,
                "userQueries": {},
            }

    def on_user_create(self, call: Call) -> Dict[str, Any]:
        call.user()
        name = shapes.user_name(call.required("userName").strip())
        guid = guid_for_name("User", name)
        with self.store.atomic() as s:
            if s.get_live(guid) is not None:
                raise Conflict(f"User {name} already exists")
            fields = {"userName": name, "fullName": call.text("fullName") or name}
            if call.text("email"):
                fields["email"] = call.text("email") or ""
            s.edit("User", guid, fields)
        return {"id": name, "userName": name}

    def on_user_update(self, call: Call, user_name: str) -> Dict[str, Any]:
        call.user()
        with self.store.atomic() as s:
            current = self._user(s, user_name)
            fields = dict(current.fields)
            for key in ("fullName", "email"):
                value = call.text(key)
                if value is not None:
                    fields[key] = value
            if fields != dict(current.fields):
                s.edit("User", current.guid, fields)
        return {"success": True}

    def on_groups(self, call: Call) -> Dict[str, Any]:
        with self.store.reading() as s:
            return {"groups": [shapes.group(g) for g in s.live("Group")]}

    def _group(self, s: Session, group_id: int) -> StoredElement:
        found = s.by_id("Group", group_id)
        if found is None:
            raise NotFound(f"Group {group_id} does not exist")
        return found

    def on_group(self, call: Call, group_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            return shapes.group(self._group(s, group_id))

    @staticmethod
    def _group_users(call: Call) -> Optional[str]:
        text = call.text("users")
        if text is None:
            return None
        names = [shapes.user_name(n.strip()) for n in text.split(",") if n.strip()]
        return shapes.encode_users(names)

    def on_group_create(self, call: Call) -> Dict[str, Any]:
        call.user()
        name = call.required("name").strip()
        guid = guid_for_name("Group", name)
        with self.store.atomic() as s:
            if s.get_live(guid) is not None:
                raise Conflict(f"Group {name} already exists")
            fields = {"name": name, "description": call.text("description") or ""}
            users = self._group_users(call)
            if users:
                fields["users"] = users
            created = s.edit("Group", guid, fields)
        return {"id": created.local_id}

    def on_group_update(self, call: Call, group_id: int) -> Dict[str, Any]:
        call.user()
        with self.store.atomic() as s:
            current = self._group(s, group_id)
            fields = dict(current.fields)
            name = call.text("name")
            if name is not None and name.strip() != fields.get("name"):
                raise BadRequest("A group's name is its identity and cannot change", ["name"])
            description = call.text("description")
            if description is not None:
                fields["description"] = description
            users = self._group_users(call)
            if users is not None:
                fields["users"] = users
            fields = {k: v for k, v in fields.items() if v != "" or k == "description"}
            if fields != dict(current.fields):
                s.edit("Group", current.guid, fields)
        return {"success": True}
