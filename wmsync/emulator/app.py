"""The WMServer REST application: ``create_app(config)`` returns a WSGI callable.

Routing is a werkzeug :class:`~werkzeug.routing.Map` over the path below the service
root, dispatching endpoint ``x`` to method ``on_x``. Every operation answers GET and
form POST alike (Esri's JavaScript client sends changing calls as GET), ignores
unknown parameters, and renders errors as the ArcGIS envelope (:mod:`.envelope`).
Paths match case-insensitively; the service name must be the repository's.

The handlers are split by area into base classes of :class:`WMServerApp`:
:mod:`~wmsync.emulator.api_config` (service root, job types, users and groups),
:mod:`~wmsync.emulator.api_jobs` (jobs, holds, notes, activity) and
:mod:`~wmsync.emulator.api_replication` (replication); :mod:`~wmsync.emulator.routes`
holds the routing map and :class:`Call`, :mod:`~wmsync.emulator.faults` the injected
failures. Their public names are importable from here too.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from wmsync import exchange
from wmsync.repository.store import Store

from .api_config import ConfigApi
from .api_jobs import JobsApi
from .api_replication import EXPORT_GZIP_LEVEL, EXTENSIONS, ReplicationApi
from .envelope import ApiError, BadRequest, Forbidden, NotFound, ServerFault
from .faults import _FAULT_KEY, FAULT_KINDS, Fault, FaultInjection
from .routes import Call, _url_map

__all__ = [
    "EXPORT_GZIP_LEVEL",
    "EXTENSIONS",
    "FAULT_KINDS",
    "Call",
    "EmulatorConfig",
    "Fault",
    "WMServerApp",
    "create_app",
]

log = logging.getLogger("wmsync.emulator")

_ROOT_RE = re.compile(r"^(/arcgis/rest/services/([^/]+)/wmserver)(/.*)?$", re.IGNORECASE)
_CALLBACK_RE = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


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

class WMServerApp(FaultInjection, ConfigApi, JobsApi, ReplicationApi):
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


def create_app(config: EmulatorConfig) -> WMServerApp:
    """Build the WSGI application of one emulated repository.

    :param config: the repository, its database and the server's options.
    """
    return WMServerApp(config)
