"""Injected failures for reliability tests: :class:`Fault`, and
:class:`FaultMiddleware`, the WSGI middleware that applies them in front of the REST
application (it knows nothing of the repository behind)."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .envelope import ServerFault

FAULT_KINDS = (
    "latency",
    "stall",
    "error",
    "http500",
    "drop",
    "html",
    "truncate",
    "wrongtype",
)
_AFTER_KINDS = ("truncate", "wrongtype")  # applied to the real answer
#: The service root in a path (any case): what a fault's ``path`` is matched below.
SERVICE_ROOT_RE = re.compile(r"^(/arcgis/rest/services/([^/]+)/wmserver)(/.*)?$", re.IGNORECASE)
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

    def matches(self, rest: str) -> bool:
        """Whether this fault hits a request to *rest* (the lower-case path below the
        root), counting the hit; a fault that has used up its ``times`` hits nothing."""
        if self.times is not None and self.hits >= self.times:
            return False
        if self._pattern.search(rest):
            self.hits += 1
            return True
        return False

    def wait(self) -> None:
        """Sleep ``seconds``, unless :meth:`release` ends it earlier."""
        self._released.wait(self.seconds)


StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]


class FaultMiddleware:
    """WSGI middleware: answers a request hit by a :class:`Fault` as that fault says,
    or passes it to *app* (and, for ``truncate``/``wrongtype``, changes the answer).

    :param app: the application behind.
    :param faults: the faults, searched in order; the list may change while it runs.
    """

    def __init__(self, app: WSGIApp, faults: List[Fault]) -> None:
        self.app = app
        self.faults = faults
        self._lock = threading.Lock()

    def _pick(self, path: str) -> Optional[Fault]:
        if not self.faults:
            return None
        found = SERVICE_ROOT_RE.match(path)
        if found is None:
            return None
        rest = (found.group(3) or "/").lower().lstrip("/")
        with self._lock:
            for fault in self.faults:
                if fault.matches(rest):
                    return fault
        return None

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        fault = self._pick(environ.get("PATH_INFO", ""))
        if fault is None:
            return self.app(environ, start_response)
        if fault.kind in ("latency", "stall"):
            fault.wait()
            if fault.kind == "latency":
                return self.app(environ, start_response)
        if fault.kind in _AFTER_KINDS:
            return self._altered(fault, environ, start_response)
        if fault.kind == "error":
            body = ServerFault("Injected fault").get_response().get_data()
            return _answer(start_response, "200 OK", "application/json", body)
        if fault.kind == "http500":
            return _answer(
                start_response, "500 INTERNAL SERVER ERROR", "text/plain", b"Injected fault"
            )
        if fault.kind == "html":
            return _answer(
                start_response, f"{fault.status} Injected", "text/html", _HTML_PAGE.encode("utf-8")
            )
        sock = environ.get("werkzeug.socket")  # drop, stall: no answer at all
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return _answer(start_response, "500 INTERNAL SERVER ERROR", "text/plain", b"")

    def _altered(
        self, fault: Fault, environ: Dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The real answer, cut in half (``truncate``) or mislabelled (``wrongtype``).

        A truncated answer keeps its full ``Content-Length`` and reads only half of the
        body from the application, as a connection lost halfway does (so a streamed
        export is not counted as downloaded)."""
        captured: List[Tuple[str, List[Tuple[str, str]]]] = []

        def capture(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, list(headers)))
            return lambda data: None

        body = self.app(environ, capture)
        try:
            status, headers = captured[0] if captured else ("500 INTERNAL SERVER ERROR", [])
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
            wanted = None if fault.kind == "wrongtype" or length is None else length // 2
            data = b""
            for chunk in body:
                data += chunk
                if wanted is not None and len(data) >= wanted:
                    break
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        if fault.kind == "wrongtype":
            kept = [
                (k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")
            ]
            start_response(
                status,
                [*kept, ("Content-Type", fault.content_type), ("Content-Length", str(len(data)))],
            )
            return [data]
        half = data[: len(data) // 2] if wanted is None else data[:wanted]
        kept = [(k, v) for k, v in headers if k.lower() not in ("content-length", "connection")]
        full = str(length if length is not None else len(data))
        start_response(status, [*kept, ("Content-Length", full), ("Connection", "close")])
        return [half]


def _answer(
    start_response: StartResponse, status: str, content_type: str, body: bytes
) -> Iterable[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
