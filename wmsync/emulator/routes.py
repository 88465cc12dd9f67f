"""Requests: :class:`Call` (one request's parameters) and the routing map, which names
endpoint ``x`` for method ``on_x`` of :class:`~wmsync.emulator.app.WMServerApp`."""

from __future__ import annotations

import functools
from typing import Any, List, Mapping, Optional

from werkzeug.datastructures import CombinedMultiDict, MultiDict
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request

from . import shapes
from .envelope import BadRequest


class Call:
    """One request's parameters (query string and form together)."""

    def __init__(self, request: Request, root: str, match: Mapping[str, Any]) -> None:
        self.request = request
        self.root = root
        self.match = match
        if request.method == "POST" and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            self.params: MultiDict[str, str] = CombinedMultiDict([request.args, request.form])
        else:
            self.params = request.args

    def text(self, name: str) -> Optional[str]:
        """A parameter's text, or ``None`` when absent."""
        return self.params.get(name)

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if value is None or not value.strip():
            raise BadRequest(f"Missing required parameter: {name}", [name])
        return value

    def integer(self, name: str) -> Optional[int]:
        return shapes.parse_int(name, self.params.get(name))

    def boolean(self, name: str, default: bool = False) -> bool:
        return shapes.parse_bool(name, self.params.get(name), default)

    def user(self) -> str:
        """The acting user (``DOMAIN|name`` -> ``DOMAIN\\name``); required."""
        return shapes.user_name(self.required("user").strip())

    def ids(self, name: str = "jobs") -> List[int]:
        text = self.required(name)
        ids = []
        for part in text.split(","):
            value = shapes.parse_int(name, part)
            if value is not None:
                ids.append(value)
        if not ids:
            raise BadRequest(f"Missing required parameter: {name}", [name])
        return ids


@functools.cache
def _url_map() -> Map:
    """The routing map, built once per process: werkzeug compiles every rule, which took
    longer than creating a whole repository (the property tests make thousands of apps).
    A Map is only read once built, so applications can share it."""
    return Map(_rules(), strict_slashes=False, merge_slashes=False)


def _rules() -> List[Rule]:
    r = Rule
    return [
        r("/", endpoint="root"),
        r("/jobtypes", endpoint="job_types"),
        r("/jobtypes/create", endpoint="job_type_create"),
        r("/jobtypes/<int:type_id>", endpoint="job_type"),
        r("/jobtypes/<int:type_id>/update", endpoint="job_type_update"),
        r("/visiblejobtypes", endpoint="visible_job_types"),
        r("/community/users", endpoint="users"),
        r("/community/users/create", endpoint="user_create"),
        r("/community/users/<user_name>", endpoint="user"),
        r("/community/users/<user_name>/update", endpoint="user_update"),
        r("/community/groups", endpoint="groups"),
        r("/community/groups/create", endpoint="group_create"),
        r("/community/groups/<int:group_id>", endpoint="group"),
        r("/community/groups/<int:group_id>/update", endpoint="group_update"),
        r("/jobs", endpoint="jobs"),
        r("/jobs/create", endpoint="jobs_create"),
        r("/jobs/delete", endpoint="jobs_delete"),
        r("/jobs/close", endpoint="jobs_close"),
        r("/jobs/reopen", endpoint="jobs_reopen"),
        r("/jobs/assign", endpoint="jobs_assign"),
        r("/jobs/unassign", endpoint="jobs_unassign"),
        r("/jobs/<int:job_id>", endpoint="job"),
        r("/jobs/<int:job_id>/update", endpoint="job_update"),
        r("/jobs/<int:job_id>/delete", endpoint="jobs_delete"),
        r("/jobs/<int:job_id>/close", endpoint="jobs_close"),
        r("/jobs/<int:job_id>/reopen", endpoint="jobs_reopen"),
        r("/jobs/<int:job_id>/assign", endpoint="jobs_assign"),
        r("/jobs/<int:job_id>/unassign", endpoint="jobs_unassign"),
        r("/jobs/<int:job_id>/holds", endpoint="holds"),
        r("/jobs/<int:job_id>/holds/create", endpoint="hold_create"),
        r("/jobs/<int:job_id>/holds/<int:hold_id>/release", endpoint="hold_release"),
        r("/jobs/<int:job_id>/notes", endpoint="notes"),
        r("/jobs/<int:job_id>/notes/update", endpoint="notes_update"),
        r("/jobs/<int:job_id>/activity", endpoint="activity"),
        r("/jobs/<int:job_id>/activity/logaction", endpoint="log_action"),
        r("/replication/info", endpoint="replication_info"),
        r("/replication/nodes/update", endpoint="node_update"),
        r("/replication/nodes/reset", endpoint="node_reset"),
        r("/replication/conflicts", endpoint="conflicts"),
        r("/replication/export", endpoint="export"),
        r("/replication/import", endpoint="import"),
        r("/replication/exports/<export_file>", endpoint="export_file"),
    ]
