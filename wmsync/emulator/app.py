"""The WMServer REST application: ``create_app(config)`` returns a WSGI callable.

It is composed, outside in, of:

- :class:`~wmsync.emulator.faults.FaultMiddleware`: injected failures (tests);
- :class:`RestApp`: matches the service root (any case) and the path below it against
  a :class:`~wmsync.emulator.routes.RouteTable`, checks the token, runs the handler
  and renders its answer or error as ArcGIS does (:mod:`.envelope`);
- the handlers, plain functions of :mod:`.api_config`, :mod:`.api_jobs` and
  :mod:`.api_replication` that get a :class:`~wmsync.emulator.context.Context` (the
  store, the config, the export folder) and the :class:`~wmsync.emulator.call.Call`.

Stock mode is only a different route table (:func:`~wmsync.emulator.routes.stock_routes`).
Every operation answers GET and form POST alike (Esri's JavaScript client sends
changing calls as GET) and ignores unknown parameters.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from wmsync.repository.store import Store

from .api_replication import EXTENSIONS
from .call import Call
from .config import EmulatorConfig
from .context import Context
from .envelope import ApiError, BadRequest, InvalidToken, NotFound, ServerFault, TokenRequired
from .exports import EXPORT_GZIP_LEVEL, ExportFolder
from .faults import FAULT_KINDS, SERVICE_ROOT_RE, Fault, FaultMiddleware
from .routes import RouteTable, extended_routes, stock_routes
from .site import apply_site_config

__all__ = [
    "EXPORT_GZIP_LEVEL",
    "EXTENSIONS",
    "FAULT_KINDS",
    "Call",
    "EmulatorConfig",
    "Fault",
    "RestApp",
    "WMServerApp",
    "create_app",
]

log = logging.getLogger("wmsync.emulator")

_CALLBACK_RE = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")
_VARIABLE_RE = re.compile(r"<(?:\w+:)?(\w+)>")
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def render(payload: Any, callback: Optional[str], pretty: bool) -> Response:
    """A JSON answer (``f=pjson``: indented; ``callback``: JSONP)."""
    text = json.dumps(payload, indent=2 if pretty else None, ensure_ascii=False)
    # A lone surrogate (accepted as a \uXXXX escape in a JSON parameter, and stored)
    # cannot be encoded as UTF-8: it is answered as the same JSON escape.
    text = _LONE_SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if callback:
        return Response(f"{callback}({text});", mimetype="application/javascript")
    return Response(text, mimetype="application/json")


def sent_token(request: Request) -> Optional[str]:
    """The token a request carries: ``X-Esri-Authorization: Bearer``, ``token`` in the
    query string, or ``token`` in a form body."""
    header = request.headers.get("X-Esri-Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    if request.args.get("token"):
        return request.args.get("token")
    if request.method == "POST" and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return request.form.get("token") or None
    return None


def check_token(request: Request, expected: Optional[str]) -> None:
    """As ArcGIS Server: 499 without a token, 498 with a wrong one (never echoed)."""
    if not expected:
        return
    sent = sent_token(request)
    if not sent:
        raise TokenRequired()
    if not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
        raise InvalidToken()


class RestApp:
    """Routes a request to its handler and renders the answer (a WSGI application).

    :param ctx: the repository the handlers work on.
    :param routes: the route table (extended or stock).
    """

    def __init__(self, ctx: Context, routes: RouteTable) -> None:
        self.ctx = ctx
        self.routes = routes

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.ctx.config.max_content_length
        try:
            response = self.dispatch(request)
        finally:
            request.close()  # uploaded file parts
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
            check_token(request, self.ctx.config.token)
            call = Call(request, request.host_url.rstrip("/") + root, args)
            result = self.routes.handlers[endpoint](self.ctx, call, **args)
            if isinstance(result, Response):
                return result
            return render(result, callback, pretty)
        except ApiError as error:
            return render(error.envelope(), callback, pretty)
        except RequestEntityTooLarge:
            return render(BadRequest("Request too large").envelope(), callback, pretty)
        except HTTPException as other:
            return render(BadRequest(f"Bad request: {other.name}").envelope(), callback, pretty)
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return render(ServerFault().envelope(), callback, pretty)

    def _route(self, request: Request) -> Tuple[str, str, Dict[str, Any]]:
        """Match the service root (any case), then the rest with the map."""
        path = request.path
        found = SERVICE_ROOT_RE.match(path)
        if found is None:
            raise NotFound(f"Not found: {path}")
        root, service, rest = found.group(1), found.group(2), found.group(3) or "/"
        if service.casefold() != self.ctx.repository.casefold():
            raise NotFound(f"Service {service} not found")
        rest = rest.rstrip("/") or "/"
        adapter = self.routes.url_map.bind("localhost")
        try:
            rule, matched = adapter.match(rest.lower(), method="GET", return_rule=True)
        except HTTPException:
            raise NotFound(f"Not found: {path}") from None
        # Literal segments match in any case; values keep the case they were sent in.
        args: Dict[str, Any] = dict(matched)
        original = rest.split("/")
        for index, segment in enumerate(rule.rule.split("/")):
            variable = _VARIABLE_RE.fullmatch(segment)
            if variable and isinstance(args.get(variable.group(1)), str):
                args[variable.group(1)] = original[index]
        return root, str(rule.endpoint), args


class WMServerApp:
    """One emulated repository as a WSGI application (see :func:`create_app`).

    :ivar config: its options.
    :ivar store: the repository.
    :ivar faults: the injected failures, changeable while it runs.
    :ivar export_dir: the folder of its exports.
    :ivar routes: its route table (shared by every application of the same kind).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(
            config.db_path, config.repository, clock_offset_ms=config.clock_offset_ms
        )
        if config.site is not None:
            added = apply_site_config(self.store, config.site)
            if added:
                log.info("added %d configuration item(s) to %s", added, config.repository)
        work = Path(config.work_dir) if config.work_dir else Path(f"{config.db_path}.d")
        self.exports = ExportFolder(work / "exports", config.export_keep_seconds, config.wall_clock)
        self.spool_dir = work / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.context = Context(config, self.store, self.exports, self.spool_dir)
        self.routes = stock_routes() if config.stock else extended_routes()
        self._wsgi = FaultMiddleware(RestApp(self.context, self.routes), list(config.faults))

    @property
    def repository(self) -> str:
        return self.config.repository

    @property
    def faults(self) -> List[Fault]:
        """The injected failures (the middleware's own list: change it in place or
        assign a new one)."""
        return self._wsgi.faults

    @faults.setter
    def faults(self, faults: List[Fault]) -> None:
        self._wsgi.faults = faults

    @property
    def export_dir(self) -> Path:
        return self.exports.path

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self._wsgi(environ, start_response)


def create_app(config: EmulatorConfig) -> WMServerApp:
    """Build the WSGI application of one emulated repository (applying ``config.site``).

    :param config: the repository, its database and the server's options.
    :raises wmsync.repository.store.WrongRepository: the database holds another repository.
    """
    return WMServerApp(config)
