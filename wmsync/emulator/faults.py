"""Injected failures for reliability tests: :class:`Fault`, and :class:`FaultInjection`,
which applies them (a base class of :class:`~wmsync.emulator.app.WMServerApp`)."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

from werkzeug.wrappers import Request, Response

from .envelope import ServerFault

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


class FaultInjection:
    """How :class:`~wmsync.emulator.app.WMServerApp` applies its faults (a base class of
    it): :meth:`_fault` picks the fault of a request, :meth:`_inject` applies it before
    the request is carried out and :meth:`_alter` to the real answer."""

    if TYPE_CHECKING:  # what fault injection uses of WMServerApp, for the type checker
        faults: List[Fault]
        _fault_lock: threading.Lock

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
