"""The routing tables: which path below the service root runs which handler.

Two tables, each built once per process (werkzeug compiles every rule, which took
longer than creating a whole repository; the property tests make thousands of apps,
and a built Map is only read, so applications share it):

- :func:`extended_routes`: Esri's documented operations plus the WorkflowSync
  extensions (replication export/nodes/conflicts, configuration writes, the
  ``guid``/``modified``/``origin`` keys);
- :func:`stock_routes`: Esri's documented operations only, answered as a stock server
  does (``docs/protocol.md``, "Stock mode of the emulator"). A path it does not list
  is an unknown resource.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

from werkzeug.routing import Map, Rule

from . import api_config as config
from . import api_jobs as jobs
from . import api_replication as replication

#: A handler: ``handler(ctx, call, **values taken from the path)`` -> JSON or Response.
Handler = Callable[..., Any]


@dataclass(frozen=True)
class RouteTable:
    """A routing map (paths in lower case -> endpoint) and each endpoint's handler."""

    url_map: Map
    handlers: Mapping[str, Handler]


#: Esri's documented operations: (path, endpoint, handler).
_ESRI: List[Tuple[str, str, Handler]] = [
    ("/", "root", config.root),
    ("/updateconfigproperties", "update_config_properties", config.update_config_properties),
    ("/jobtypes", "job_types", config.job_types),
    ("/jobtypes/<int:type_id>", "job_type", config.job_type),
    ("/visiblejobtypes", "visible_job_types", config.job_types),
    ("/community/users", "users", config.users),
    ("/community/users/<user_name>", "user", config.user),
    ("/community/groups", "groups", config.groups),
    ("/community/groups/<int:group_id>", "group", config.group),
    ("/jobs", "jobs", jobs.jobs),
    ("/jobs/create", "jobs_create", jobs.jobs_create),
    ("/jobs/delete", "jobs_delete", jobs.jobs_delete),
    ("/jobs/close", "jobs_close", jobs.jobs_close),
    ("/jobs/reopen", "jobs_reopen", jobs.jobs_reopen),
    ("/jobs/assign", "jobs_assign", jobs.jobs_assign),
    ("/jobs/unassign", "jobs_unassign", jobs.jobs_unassign),
    ("/jobs/<int:job_id>", "job", jobs.job),
    ("/jobs/<int:job_id>/update", "job_update", jobs.job_update_documented),
    ("/jobs/<int:job_id>/delete", "job_delete", jobs.jobs_delete),
    ("/jobs/<int:job_id>/close", "job_close", jobs.jobs_close),
    ("/jobs/<int:job_id>/reopen", "job_reopen", jobs.jobs_reopen),
    ("/jobs/<int:job_id>/assign", "job_assign", jobs.jobs_assign),
    ("/jobs/<int:job_id>/unassign", "job_unassign", jobs.jobs_unassign),
    ("/jobs/<int:job_id>/holds", "holds", jobs.holds),
    ("/jobs/<int:job_id>/holds/create", "hold_create", jobs.hold_create),
    ("/jobs/<int:job_id>/holds/<int:hold_id>/release", "hold_release", jobs.hold_release),
    ("/jobs/<int:job_id>/notes", "notes", jobs.notes),
    ("/jobs/<int:job_id>/notes/update", "notes_update", jobs.notes_update),
    ("/jobs/<int:job_id>/activity", "activity", jobs.activity),
    ("/jobs/<int:job_id>/activity/logaction", "log_action", jobs.log_action),
    ("/replication/info", "replication_info", replication.replication_info),
    ("/replication/import", "import", replication.import_refused),
]

#: The extended server: these replace or join Esri's entries of the same endpoint.
_EXTENSIONS: List[Tuple[str, str, Handler]] = [
    ("/", "root", config.root_with_name),
    ("/jobtypes", "job_types", config.job_types_with_identity),
    ("/jobtypes/<int:type_id>", "job_type", config.job_type_with_identity),
    ("/jobtypes/create", "job_type_create", config.job_type_create),
    ("/jobtypes/<int:type_id>/update", "job_type_update", config.job_type_update),
    ("/community/users/create", "user_create", config.user_create),
    ("/community/users/<user_name>/update", "user_update", config.user_update),
    ("/community/groups/create", "group_create", config.group_create),
    ("/community/groups/<int:group_id>/update", "group_update", config.group_update),
    ("/jobs/<int:job_id>", "job", jobs.job_with_identity),
    ("/jobs/<int:job_id>/update", "job_update", jobs.job_update),
    ("/replication/info", "replication_info", replication.replication_info_extended),
    ("/replication/nodes/update", "node_update", replication.node_update),
    ("/replication/nodes/reset", "node_reset", replication.node_reset),
    ("/replication/nodes/delete", "node_delete", replication.node_delete),
    ("/replication/incarnation", "incarnation", replication.new_incarnation),
    ("/replication/renumber", "renumber", replication.renumber),
    ("/replication/jobids", "jobids", replication.job_ids),
    ("/replication/conflicts", "conflicts", replication.conflicts),
    ("/replication/export", "export", replication.export),
    ("/replication/import", "import", replication.import_document),
    ("/replication/exports/<export_file>", "export_file", replication.export_file),
]


def _table(entries: List[Tuple[str, str, Handler]]) -> RouteTable:
    paths: Dict[str, str] = {}
    handlers: Dict[str, Handler] = {}
    for path, endpoint, handler in entries:  # later entries replace earlier ones
        paths[endpoint] = path
        handlers[endpoint] = handler
    rules = [Rule(path, endpoint=endpoint) for endpoint, path in paths.items()]
    return RouteTable(Map(rules, strict_slashes=False, merge_slashes=False), handlers)


@functools.cache
def extended_routes() -> RouteTable:
    """Esri's operations and the WorkflowSync extensions (the default server)."""
    return _table(_ESRI + _EXTENSIONS)


@functools.cache
def stock_routes() -> RouteTable:
    """Esri's documented operations only (``--stock``)."""
    return _table(_ESRI)
