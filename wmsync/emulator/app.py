"""The WMServer REST application: ``create_app(config)`` returns a WSGI callable.

Routing is a werkzeug :class:`~werkzeug.routing.Map` over the path below the service
root, dispatching endpoint ``x`` to method ``on_x``. Every operation answers GET and
form POST alike (Esri's JavaScript client sends changing calls as GET), ignores
unknown parameters, and renders errors as the ArcGIS envelope (:mod:`.envelope`).
Paths match case-insensitively; the service name must be the repository's.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import requests
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.model import guid_for_name

from . import catalog, shapes
from .envelope import ApiError, BadRequest, Conflict, Forbidden, NotFound, ServerFault
from .store import ImportRefused, Session, Store, StoredElement

log = logging.getLogger("wmsync.emulator")

EXTENSIONS = ["wmsync-replication/1"]

_ROOT_RE = re.compile(r"^(/arcgis/rest/services/([^/]+)/wmserver)(/.*)?$", re.IGNORECASE)
_CALLBACK_RE = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")
_EXPORT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CHUNK = 1024 * 1024
#: zlib level of gzip-served exports: 1 makes the XML about 9x smaller at about 7 ms per
#: MB; level 6 is only about 10 % smaller still, for three times the CPU.
EXPORT_GZIP_LEVEL = 1


FAULT_KINDS = (
    "latency", "stall", "error", "http500", "drop", "html", "truncate", "wrongtype",
)
_AFTER_KINDS = ("truncate", "wrongtype")  # applied to the real answer
_FAULT_KEY = "wmsync.emulator.fault"
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Service "
    "unavailable</h1><p>The server encountered an error (injected).</p></body></html>"
)


@dataclass
class Fault:
    """An injected failure for reliability tests.

    :ivar path: regular expression searched in the lower-case path below the root
        (e.g. ``"replication/import"``; ``""`` matches every request).
    :ivar kind: ``"latency"`` (sleep ``seconds``, then answer), ``"stall"`` (wait
        ``seconds``, then close the connection: the request is never carried out, as a
        client killed while it waits sees it), ``"error"`` (a 500 envelope),
        ``"http500"`` (HTTP status 500 with a plain body), ``"drop"``
        (close the connection without an answer), ``"html"`` (an HTML error page with
        HTTP ``status``, as a proxy or a login portal answers), ``"truncate"`` (the real
        answer, cut in half under its full ``Content-Length``, then the connection is
        closed) or ``"wrongtype"`` (the real answer labelled ``content_type``).
    :ivar times: how many matching requests it hits (``None``: all).
    :ivar status: the HTTP status of an ``"html"`` page.
    :ivar content_type: the label a ``"wrongtype"`` answer gets.

    :meth:`release` ends the waits of ``latency`` and ``stall`` early (tests).
    """

    path: str
    kind: str
    seconds: float = 0.0
    times: Optional[int] = None
    hits: int = 0
    status: int = 200
    content_type: str = "application/octet-stream"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self._pattern = re.compile(self.path)
        self._released = threading.Event()

    def release(self) -> None:
        """Wake every request waiting in this fault now (and skip later waits)."""
        self._released.set()


@dataclass
class EmulatorConfig:
    """Everything one emulated repository needs; nothing is read at import time.

    :ivar repository: the repository (and service) name.
    :ivar db_path: its SQLite file (created with the default configuration if new).
    :ivar token: when set, every request must carry it (403 otherwise).
    :ivar clock_offset_ms: added to this server's clock (clock-skew tests).
    :ivar max_content_length: the largest request body accepted, in bytes.
    :ivar max_document_bytes: the largest (decompressed) exchange document imported.
    :ivar work_dir: where exports and import spools go (default ``<db_path>.d``).
    :ivar export_keep_seconds: exports are kept at least this long (>= 1 hour).
    :ivar fetch_timeout: seconds to wait when fetching a ``jxlURL``.
    :ivar gzip_exports: serve an export gzip-compressed (``Content-Encoding: gzip``) to a
        client whose ``Accept-Encoding`` allows it; the compressed copy is written once,
        beside the export, at :data:`EXPORT_GZIP_LEVEL`.
    :ivar faults: injected failures (see :class:`Fault`); the list can be changed
        while the server runs (``app.faults``).
    """

    repository: str
    db_path: str
    token: Optional[str] = None
    clock_offset_ms: int = 0
    max_content_length: int = 4 * 1024**3
    max_document_bytes: int = exchange.DEFAULT_MAX_BYTES
    work_dir: Optional[str] = None
    export_keep_seconds: float = 3600.0
    fetch_timeout: float = 60.0
    gzip_exports: bool = True
    faults: List[Fault] = field(default_factory=list)


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


# Job update: request key -> (field, parser). Parsers turn a value into field text.
def _text(name: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise BadRequest(f"Invalid value for parameter {name}")
    return str(value)


def _int_text(name: str, value: Any) -> Optional[str]:
    parsed = shapes.parse_int(name, value)
    return None if parsed is None else str(parsed)


def _user_text(name: str, value: Any) -> str:
    return shapes.user_name(_text(name, value))


_JOB_KEYS: Dict[str, Tuple[str, Callable[[str, Any], Optional[str]]]] = {
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


class WMServerApp:
    """The WSGI application of one emulated repository (see :func:`create_app`)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(
            config.db_path, config.repository, clock_offset_ms=config.clock_offset_ms
        )
        work = Path(config.work_dir) if config.work_dir else Path(f"{config.db_path}.d")
        self.export_dir = work / "exports"
        self.spool_dir = work / "spool"
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.faults: List[Fault] = list(config.faults)
        self._fault_lock = threading.Lock()
        self.url_map = _url_map()

    @property
    def repository(self) -> str:
        return self.config.repository

    # -- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.config.max_content_length
        try:
            response = self.dispatch(request)
        finally:
            request.close()  # uploaded file parts
        fault = environ.get(_FAULT_KEY)
        if fault is not None:
            response = self._alter(fault, response)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Route one request and render its answer (or its error envelope)."""
        callback: Optional[str] = None
        pretty = False
        try:
            callback = request.args.get("callback") or None
            if callback is not None and not _CALLBACK_RE.match(callback):
                callback = None
                raise BadRequest("Invalid value for parameter callback", ["callback"])
            pretty = request.args.get("f", "").lower() == "pjson"
            root, endpoint, args = self._route(request)
            fault = self._fault(request.path[len(root):])
            if fault is not None:
                injected = self._inject(fault, request)
                if injected is not None:
                    return injected
            self._check_token(request)
            call = Call(request, request.host_url.rstrip("/") + root, args)
            result = getattr(self, f"on_{endpoint}")(call, **args)
            if isinstance(result, Response):
                return result
            return self._render(result, callback, pretty)
        except ApiError as error:
            return self._render(error.envelope(), callback, pretty)
        except RequestEntityTooLarge:
            return self._render(BadRequest("Request too large").envelope(), callback, pretty)
        except HTTPException as other:
            too_bad = BadRequest(f"Bad request: {other.name}")
            return self._render(too_bad.envelope(), callback, pretty)
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return self._render(ServerFault().envelope(), callback, pretty)

    @staticmethod
    def _render(payload: Any, callback: Optional[str], pretty: bool) -> Response:
        text = json.dumps(payload, indent=2 if pretty else None, ensure_ascii=False)
        if callback:
            return Response(f"{callback}({text});", mimetype="application/javascript")
        return Response(text, mimetype="application/json")

    def _route(self, request: Request) -> Tuple[str, str, Dict[str, Any]]:
        """Match the service root (any case), then the rest with the map."""
        path = request.path
        found = _ROOT_RE.match(path)
        if found is None:
            raise NotFound(f"Not found: {path}")
        root, service, rest = found.group(1), found.group(2), found.group(3) or "/"
        if service.casefold() != self.repository.casefold():
            raise NotFound(f"Service {service} not found")
        rest = rest.rstrip("/") or "/"
        adapter = self.url_map.bind("localhost")
        try:
            rule, matched = adapter.match(rest.lower(), method="GET", return_rule=True)
        except HTTPException:
            raise NotFound(f"Not found: {path}") from None
        # Literal segments match in any case; values keep the case they were sent in.
        args: Dict[str, Any] = dict(matched)
        original = rest.split("/")
        for index, segment in enumerate(rule.rule.split("/")):
            variable = re.fullmatch(r"<(?:\w+:)?(\w+)>", segment)
            if variable and isinstance(args.get(variable.group(1)), str):
                args[variable.group(1)] = original[index]
        return root, str(rule.endpoint), dict(args)

    def _check_token(self, request: Request) -> None:
        expected = self.config.token
        if not expected:
            return
        sent = None
        header = request.headers.get("X-Esri-Authorization", "")
        if header.lower().startswith("bearer "):
            sent = header[7:].strip()
        if not sent:
            sent = request.args.get("token")
        if not sent and request.method == "POST" and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = request.form.get("token")
        if not sent:
            raise Forbidden("Token required")
        if not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
            raise Forbidden("Invalid token")

    def _fault(self, rest: str) -> Optional[Fault]:
        if not self.faults:
            return None
        lowered = rest.lower().lstrip("/")
        with self._fault_lock:
            for fault in self.faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault._pattern.search(lowered):
                    fault.hits += 1
                    return fault
        return None

    @staticmethod
    def _inject(fault: Fault, request: Request) -> Optional[Response]:
        if fault.kind in ("latency", "stall"):
            fault._released.wait(fault.seconds)
            if fault.kind == "latency":
                return None
        if fault.kind in _AFTER_KINDS:  # see __call__ and _alter
            request.environ[_FAULT_KEY] = fault
            return None
        if fault.kind == "error":
            raise ServerFault("Injected fault")
        if fault.kind == "http500":
            return Response("Injected fault", status=500, mimetype="text/plain")
        if fault.kind == "html":
            return Response(_HTML_PAGE, status=fault.status, mimetype="text/html")
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return Response(b"", status=500)

    @staticmethod
    def _alter(fault: Fault, response: Response) -> Response:
        """Apply a fault that changes the real answer (``truncate``, ``wrongtype``)."""
        response.direct_passthrough = False  # streamed exports: read them whole
        try:
            body = response.get_data()
        finally:
            response.close()
        encoding = response.headers.get("Content-Encoding")
        if fault.kind == "wrongtype":
            altered = Response(body, status=response.status_code,
                               content_type=fault.content_type)
        else:
            altered = Response(body[: len(body) // 2], status=response.status_code,
                               content_type=response.content_type)
            altered.headers["Content-Length"] = str(len(body))  # promises more than it sends
            altered.headers["Connection"] = "close"
        if encoding:  # a gzip-served export stays gzip
            altered.headers["Content-Encoding"] = encoding
        return altered

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

    # -- jobs ---------------------------------------------------------------------------

    def _job(self, s: Session, job_id: int) -> StoredElement:
        found = s.by_id("Job", job_id)
        if found is None:
            raise NotFound(f"Job {job_id} does not exist")
        return found

    def on_jobs(self, call: Call) -> Dict[str, Any]:
        with self.store.reading() as s:
            return {"jobIds": s.live_ids("Job")}

    def on_job(self, call: Call, job_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            return shapes.job(s, self._job(s, job_id))

    def _reference(self, s: Session, kind: str, name: str, local_id: Optional[int]) -> str:
        if local_id is None:
            return ""
        found = s.by_id(kind, local_id)
        if found is None:
            raise BadRequest(f"Invalid value for parameter {name}: {kind} {local_id} "
                             "does not exist", [name])
        return found.guid

    def on_jobs_create(self, call: Call) -> Dict[str, Any]:
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
        now = str(self.store.now_ms())
        with self.store.atomic() as s:
            job_type = s.by_id("JobType", type_id)
            if job_type is None:
                raise BadRequest(
                    f"Invalid value for parameter jobTypeId: job type {type_id} does not exist",
                    ["jobTypeId"],
                )
            defaults = job_type.fields
            parent = self._reference(s, "Job", "parentJobId", call.integer("parentJobId"))
            if explicit is not None and s.id_taken("Job", explicit):
                raise Conflict(f"Job id {explicit} is already taken")
            ids: List[int] = []
            for _ in range(count):
                local_id = explicit if explicit is not None else s.next_id("Job")
                name = call.text("name") or defaults.get("defaultJobName") or "Job [JOB:ID]"
                fields: Dict[str, Optional[str]] = {
                    "name": name.replace("[JOB:ID]", str(local_id)),
                    "description": call.text("description")
                    or defaults.get("defaultDescription"),
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

    def _update_values(self, call: Call) -> Dict[str, Any]:
        """The job update's values: ``properties`` JSON first, flat parameters fill the
        keys it leaves absent or null."""
        values: Dict[str, Any] = {}
        text = call.text("properties")
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

    def on_job_update(self, call: Call, job_id: int) -> Dict[str, Any]:
        user = call.user()
        values = self._update_values(call)
        with self.store.atomic() as s:
            current = self._job(s, job_id)
            fields: Dict[str, Optional[str]] = dict(current.fields)
            for key, (name, parse) in _JOB_KEYS.items():
                if key in values:
                    parsed = parse(key, values[key])
                    if parsed is not None:
                        fields[name] = parsed
            if "jobTypeId" in values:
                type_id = shapes.parse_int("jobTypeId", values["jobTypeId"])
                if type_id is not None:
                    fields["jobType"] = self._reference(s, "JobType", "jobTypeId", type_id)
            if "parentJobId" in values:
                parent_id = shapes.parse_int("parentJobId", values["parentJobId"])
                if parent_id is not None:
                    if parent_id == job_id:
                        raise BadRequest("A job cannot be its own parent", ["parentJobId"])
                    fields["parentJob"] = self._reference(s, "Job", "parentJobId", parent_id)
            if shapes.parse_bool("clearStartDate", values.get("clearStartDate")):
                fields["startDate"] = None
            if shapes.parse_bool("clearDueDate", values.get("clearDueDate")):
                fields["dueDate"] = None
            self._change_job(s, current, fields, user, "UpdateJob")
        return {"success": True}

    def _change_job(
        self,
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
                k for k in set(clean) | set(current.fields)
                if clean.get(k) != current.fields.get(k)
            )
            message = f"Job {current.local_id} updated: {', '.join(changed)}"
        s.edit("Job", current.guid, clean)
        s.log_activity(current.guid, activity, user, message)
        return True

    def _job_ids(self, call: Call, job_id: Optional[int]) -> List[int]:
        return [job_id] if job_id is not None else call.ids("jobs")

    def on_jobs_delete(self, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
        call.user()
        ids = self._job_ids(call, job_id)
        delete_history = call.boolean("deleteHistory", False)
        with self.store.atomic() as s:
            for one in ids:
                current = self._job(s, one)
                for hold in s.of_job("Hold", current.guid):
                    s.delete(hold.guid)
                if delete_history:
                    for record in s.of_job("Activity", current.guid):
                        s.delete(record.guid)
                s.delete(current.guid)
        return {"success": True}

    def on_jobs_close(self, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
        user = call.user()
        with self.store.atomic() as s:
            for one in self._job_ids(call, job_id):
                current = self._job(s, one)
                if shapes.number(current.fields.get("stage")) == catalog.STAGE_CLOSED:
                    raise Conflict(f"Job {one} is already closed")
                fields: Dict[str, Optional[str]] = dict(current.fields)
                fields.update(
                    stage=str(catalog.STAGE_CLOSED),
                    status=str(catalog.STATUS_CLOSED),
                    endDate=str(self.store.now_ms()),
                )
                self._change_job(s, current, fields, user, "CloseJob", f"Job {one} closed")
        return {"success": True}

    def on_jobs_reopen(self, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
        user = call.user()
        with self.store.atomic() as s:
            for one in self._job_ids(call, job_id):
                current = self._job(s, one)
                if shapes.number(current.fields.get("stage")) != catalog.STAGE_CLOSED:
                    raise Conflict(f"Job {one} is not closed")
                fields: Dict[str, Optional[str]] = dict(current.fields)
                fields.update(
                    stage=str(catalog.STAGE_READY), status=str(catalog.STATUS_READY),
                    endDate=None,
                )
                self._change_job(s, current, fields, user, "ReopenJob", f"Job {one} reopened")
        return {"success": True}

    def on_jobs_assign(self, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
        user = call.user()
        assigned_type = call.integer("assignedType")
        if assigned_type is None:
            raise BadRequest("Missing required parameter: assignedType", ["assignedType"])
        assigned_to = shapes.user_name(call.text("assignedTo") or "")
        with self.store.atomic() as s:
            for one in self._job_ids(call, job_id):
                current = self._job(s, one)
                fields: Dict[str, Optional[str]] = dict(current.fields)
                fields.update(assignedType=str(assigned_type), assignedTo=assigned_to or None)
                self._change_job(
                    s, current, fields, user, "AssignJob",
                    f"Job {one} assigned to {assigned_to or 'nobody'}",
                )
        return {"success": True}

    def on_jobs_unassign(self, call: Call, job_id: Optional[int] = None) -> Dict[str, Any]:
        user = call.user()
        with self.store.atomic() as s:
            for one in self._job_ids(call, job_id):
                current = self._job(s, one)
                fields: Dict[str, Optional[str]] = dict(current.fields)
                fields.update(assignedType="0", assignedTo=None)
                self._change_job(s, current, fields, user, "UnassignJob", f"Job {one} unassigned")
        return {"success": True}

    # -- holds, notes, activity ---------------------------------------------------------

    def on_holds(self, call: Call, job_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            current = self._job(s, job_id)
            return {"holds": [shapes.hold(h) for h in s.of_job("Hold", current.guid)]}

    def on_hold_create(self, call: Call, job_id: int) -> Dict[str, Any]:
        user = call.user()
        hold_type = call.integer("type")
        if hold_type is None:
            raise BadRequest("Missing required parameter: type", ["type"])
        if hold_type not in [t["id"] for t in catalog.HOLD_TYPES]:
            raise BadRequest(f"Invalid value for parameter type: {hold_type}", ["type"])
        with self.store.atomic() as s:
            current = self._job(s, job_id)
            fields = {
                "job": current.guid,
                "type": str(hold_type),
                "heldBy": user,
                "holdDate": str(self.store.now_ms()),
                "holdComments": call.text("comments") or None,
            }
            hold = s.edit("Hold", None, fields)
            s.log_activity(current.guid, "AddHold", user, f"Hold {hold.local_id} added")
        return {"holdId": hold.local_id}

    def on_hold_release(self, call: Call, job_id: int, hold_id: int) -> Dict[str, Any]:
        user = call.user()
        with self.store.atomic() as s:
            current = self._job(s, job_id)
            hold = s.by_id("Hold", hold_id)
            if hold is None or hold.fields.get("job") != current.guid:
                raise NotFound(f"Hold {hold_id} of job {job_id} does not exist")
            if hold.fields.get("releaseDate"):
                raise Conflict(f"Hold {hold_id} is already released")
            fields: Dict[str, Optional[str]] = dict(hold.fields)
            fields.update(
                releasedBy=user,
                releaseDate=str(self.store.now_ms()),
                releaseComments=call.text("comments") or None,
            )
            s.edit("Hold", hold.guid, fields)
            s.log_activity(current.guid, "ReleaseHold", user, f"Hold {hold_id} released")
        return {"success": True}

    def on_notes(self, call: Call, job_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            return {"notes": self._job(s, job_id).fields.get("notes", "")}

    def on_notes_update(self, call: Call, job_id: int) -> Dict[str, Any]:
        user = call.user()
        notes = call.text("notes") or None
        with self.store.atomic() as s:
            current = self._job(s, job_id)
            fields: Dict[str, Optional[str]] = dict(current.fields)
            fields["notes"] = notes
            self._change_job(s, current, fields, user, "UpdateNotes", "Notes updated")
        return {"success": True}

    def on_activity(self, call: Call, job_id: int) -> Dict[str, Any]:
        with self.store.reading() as s:
            current = self._job(s, job_id)
            return {"activity": [shapes.activity(a) for a in s.of_job("Activity", current.guid)]}

    def on_log_action(self, call: Call, job_id: int) -> Dict[str, Any]:
        user = call.user()
        type_id = call.integer("type")
        if type_id is None:
            raise BadRequest("Missing required parameter: type", ["type"])
        with self.store.atomic() as s:
            current = self._job(s, job_id)
            s.add_activity(current.guid, type_id, user, call.text("comments") or "")
        return {"success": True}

    # -- replication --------------------------------------------------------------------

    def on_replication_info(self, call: Call) -> Dict[str, Any]:
        call.user()
        with self.store.reading() as s:
            return {
                "repository": self.repository,
                "generation": s.generation(),
                "extensions": EXTENSIONS,
                "nodes": [n.to_dict() for n in s.nodes()],
            }

    def on_node_update(self, call: Call) -> Dict[str, Any]:
        call.user()
        node = self.store.update_node(
            call.required("name").strip(),
            server_url=call.text("serverURL"),
            description=call.text("description"),
            is_parent=None if call.text("isParent") is None else call.boolean("isParent"),
            is_connected=None
            if call.text("isConnected") is None
            else call.boolean("isConnected"),
            last_sync_gen=call.integer("lastSyncGen"),
            sync_id=call.text("syncId") or None,
            stamp_last_sync=call.boolean("stampLastSync"),
            job_id_start=call.integer("jobIdStart"),
            job_id_block=call.integer("jobIdBlock"),
        )
        return {"success": True, "lastSync": node.last_sync}

    def on_node_reset(self, call: Call) -> Dict[str, Any]:
        call.user()
        name = call.required("name").strip()
        if not self.store.reset_node(name):
            raise NotFound(f"Node {name} does not exist")
        return {"success": True}

    def on_conflicts(self, call: Call) -> Dict[str, Any]:
        call.user()
        return {"conflicts": self.store.conflicts(call.integer("sinceGen"))}

    def on_export(self, call: Call) -> Dict[str, Any]:
        call.user()
        since_gen = call.integer("sinceGen") or 0
        if since_gen < 0:
            raise BadRequest("Invalid value for parameter sinceGen", ["sinceGen"])
        self._prune_exports()
        info = self.store.export(self.export_dir, since_gen, call.text("excludeVia") or None)
        return {
            "jxlURL": f"{call.root}/replication/exports/{info.export_id}.jxl",
            "generation": info.generation,
            "sinceGen": info.since_gen,
            "exportTime": info.export_time,
            "count": info.count,
        }

    def _prune_exports(self) -> None:
        keep = max(self.config.export_keep_seconds, 3600.0)
        limit = time.time() - keep
        for path in [*self.export_dir.glob("*.jxl"), *self.export_dir.glob("*.jxl.gz")]:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                pass

    def on_export_file(self, call: Call, export_file: str) -> Response:
        export_id, _, suffix = export_file.lower().partition(".")
        if suffix != "jxl" or not _EXPORT_ID_RE.match(export_id):
            raise NotFound(f"Export {export_file} does not exist")
        path = self.export_dir / f"{export_id}.jxl"
        packed = (
            self.config.gzip_exports and call.request.accept_encodings.quality("gzip") > 0
        )
        try:
            handle = open(self._gzipped(path) if packed else path, "rb")
        except FileNotFoundError:
            raise NotFound(f"Export {export_file} does not exist") from None
        size = os.fstat(handle.fileno()).st_size
        body = wrap_file(call.request.environ, handle)
        response = Response(body, mimetype="application/xml", direct_passthrough=True)
        response.content_length = size  # of what is sent: the compressed bytes
        response.headers["Vary"] = "Accept-Encoding"
        if packed:
            response.headers["Content-Encoding"] = "gzip"
        return response

    @staticmethod
    def _gzipped(path: Path) -> Path:
        """The gzip copy of an export, written the first time it is asked for (to a
        temporary name, then renamed, so concurrent downloads never see half of it).

        :raises FileNotFoundError: there is no such export.
        """
        packed = path.with_name(path.name + ".gz")
        if packed.is_file():
            return packed
        partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
        try:
            exchange.gzip_file(str(path), str(partial), compresslevel=EXPORT_GZIP_LEVEL)
            os.replace(partial, packed)
        finally:
            if partial.exists():
                partial.unlink()
        return packed

    def on_import(self, call: Call) -> Dict[str, Any]:
        call.user()
        if not call.boolean("merge", True):
            raise BadRequest("merge=false (replace) is not supported by the emulator", ["merge"])
        spool = tempfile.NamedTemporaryFile(
            dir=self.spool_dir, suffix=".jxl", delete=False
        )
        try:
            with spool:
                self._receive_document(call, spool)
            try:
                result = self.store.import_file(
                    spool.name, max_bytes=self.config.max_document_bytes
                )
            except ExchangeFormatError as error:
                details = []
                if error.line is not None:
                    details.append(f"line {error.line}")
                if error.element:
                    details.append(f"element {error.element}")
                # the location goes in the details only (it was shown twice)
                raise BadRequest(
                    f"Invalid exchange document: {error.reason}", details
                ) from None
            except ImportRefused as error:
                raise BadRequest(f"Document refused: {error}") from None
        finally:
            os.unlink(spool.name)
        return result.to_dict()

    def _receive_document(self, call: Call, spool: Any) -> None:
        request = call.request
        limit = self.config.max_content_length
        if request.mimetype == "multipart/form-data":
            part = request.files.get("jxl")
            if part is None:
                raise BadRequest("Missing required parameter: jxl (file part)", ["jxl"])
            shutil.copyfileobj(part.stream, spool, _CHUNK)
            return
        url = call.text("jxlURL") or call.text("jtxURL")
        if url:
            self._fetch(call, url, spool)
            return
        if request.content_length is not None and request.content_length > limit:
            raise BadRequest("Request too large")
        stream = request.stream
        total = 0
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise BadRequest("Request too large")
            spool.write(chunk)
        if total == 0:
            raise BadRequest("Missing document: send it as the body, a jxl file part or jxlURL")

    def _fetch(self, call: Call, url: str, spool: Any) -> None:
        """Fetch a ``jxlURL`` from this server's own host or loopback only."""
        parts = urlsplit(url)
        own_host = urlsplit(call.request.host_url).hostname
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or (
            host not in _LOOPBACK and host != own_host
        ):
            raise BadRequest("jxlURL must point to this server or to loopback", ["jxlURL"])
        own_exports = f"{call.root}/replication/exports/".lower()
        if url.lower().startswith(own_exports):
            name = url[len(own_exports):].split("?")[0].lower()
            export_id = name[:-4] if name.endswith(".jxl") else ""
            path = self.export_dir / f"{export_id}.jxl"
            if not _EXPORT_ID_RE.match(export_id) or not path.is_file():
                raise BadRequest("jxlURL names no export of this server", ["jxlURL"])
            with open(path, "rb") as source:
                shutil.copyfileobj(source, spool, _CHUNK)
            return
        try:
            with requests.get(
                url, stream=True, timeout=self.config.fetch_timeout, allow_redirects=False
            ) as answer:
                if answer.status_code != 200:
                    raise BadRequest(f"jxlURL answered HTTP {answer.status_code}", ["jxlURL"])
                total = 0
                for chunk in answer.iter_content(_CHUNK):
                    total += len(chunk)
                    if total > self.config.max_content_length:
                        raise BadRequest("Document too large")
                    spool.write(chunk)
        except requests.RequestException:
            raise BadRequest("jxlURL could not be fetched", ["jxlURL"]) from None


def create_app(config: EmulatorConfig) -> WMServerApp:
    """Build the WSGI application of one emulated repository.

    :param config: the repository, its database and the server's options.
    """
    return WMServerApp(config)
