"""Running an emulated repository: in the foreground (:func:`serve`) or in a thread
(:func:`start_in_thread`, for tests and demos).

Both use werkzeug's threaded ``make_server`` (one thread per request) and bind
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Any, Dict, Iterator, Optional, TextIO, Tuple, Type, Union
from urllib.parse import quote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from wmsync.repository.store import Store

from .app import EmulatorConfig, WMServerApp, create_app

READY_TIMEOUT = 10.0


class QuietRequestHandler(WSGIRequestHandler):
    """Logs nothing per request (tests start many servers)."""

    def log_request(self, code: Union[int, str] = "-", size: Union[int, str] = "-") -> None:
        pass


def root_url(host: str, port: int, repository: str, scheme: str = "http") -> str:
    """The service root URL of *repository* served at *host*:*port*."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only names the URL to print
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = f"/arcgis/rest/services/{quote(repository, safe='')}/WMServer"
    return f"{scheme}://{host}:{port}{path}"


def _wait_ready(host: str, port: int, deadline: float) -> None:
    address = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    address = "::1" if address == "::" else address
    while True:
        try:
            with socket.create_connection((address, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"emulator on port {port} did not start in time") from None
            time.sleep(0.02)


class RunningEmulator:
    """An emulated repository served from a background thread.

    :ivar url: its service root URL.
    :ivar app: the WSGI application (``app.faults`` can be changed while it runs).
    :ivar store: its :class:`~wmsync.repository.store.Store`.
    :ivar db_path: its SQLite file.
    """

    def __init__(self, server: BaseWSGIServer, app: WMServerApp, url: str) -> None:
        self._server = server
        self.app = app
        self.url = url
        self.store: Store = app.store
        self.db_path = app.config.db_path
        self.repository = app.config.repository
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"emulator-{self.repository}",
            daemon=True,
        )
        self._stopped = False

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Serve from the background thread; returns once it accepts connections."""
        self._thread.start()
        try:
            _wait_ready(self.host, self.port, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.repository} at {self.url}>"


def _closing(app: Any) -> Any:
    """*app*, with every answer closed even when werkzeug's server skips it.

    When a client resets the connection during an answer (a killed or timed-out
    download), the server's clean-up read raises before it calls the answer's
    ``close()``, and an export file would stay open. The generator below closes the
    answer when it is finalized, which happens as soon as the server drops it.
    """

    def serve(environ: Dict[str, Any], start_response: Any) -> Iterator[bytes]:
        body = app(environ, start_response)

        def chunks() -> Iterator[bytes]:
            try:
                yield from body
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

        return chunks()

    return serve


def _build(
    repository: str,
    db_path: Union[str, os.PathLike[str]],
    host: str,
    port: int,
    token: Optional[str],
    clock_offset_ms: int,
    quiet: bool,
    options: Any,
    ssl_context: Any = None,
) -> Tuple[BaseWSGIServer, WMServerApp, str]:
    config = EmulatorConfig(
        repository=repository,
        db_path=os.fspath(db_path),
        token=token or None,
        clock_offset_ms=clock_offset_ms,
        **options,
    )
    app = create_app(config)
    handler = QuietRequestHandler if quiet else WSGIRequestHandler
    server = make_server(
        host,
        port,
        _closing(app),
        threaded=True,
        request_handler=handler,
        ssl_context=ssl_context,
    )
    scheme = "https" if ssl_context is not None else "http"
    url = root_url(host, int(server.server_address[1]), repository, scheme)
    return server, app, url


def start_in_thread(
    repository: str,
    db_path: Union[str, os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: Optional[str] = None,
    clock_offset_ms: int = 0,
    quiet: bool = True,
    ready_timeout: float = READY_TIMEOUT,
    ssl_context: Any = None,
    **options: Any,
) -> RunningEmulator:
    """Serve one repository from a background thread; returns once it accepts requests.

    :param repository: the repository (and service) name.
    :param db_path: its SQLite file (created with the default configuration if new).
    :param port: 0 picks a free port (see ``.url``).
    :param token: require this token on every request.
    :param clock_offset_ms: skew this repository's clock (tests).
    :param quiet: log no line per request.
    :param ssl_context: serve HTTPS: an :class:`ssl.SSLContext` or a ``(certfile,
        keyfile)`` pair (werkzeug's ``ssl_context``); the URL is then ``https://``.
    :param options: further :class:`~wmsync.emulator.app.EmulatorConfig` fields
        (``faults``, ``stock``, ``site``, ``max_content_length``, ``work_dir`` ...).
    :raises RuntimeError: it did not accept connections within *ready_timeout*.
    """
    server, app, url = _build(
        repository, db_path, host, port, token, clock_offset_ms, quiet, options, ssl_context
    )
    running = RunningEmulator(server, app, url)
    running.start(ready_timeout)
    return running


def serve(
    repository: str,
    db_path: Union[str, os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: Optional[str] = None,
    clock_offset_ms: int = 0,
    out: Optional[TextIO] = None,
    **options: Any,
) -> None:
    """Serve one repository until SIGTERM or Ctrl-C (what ``wmsync serve`` runs).

    The first line written to *out* (stdout) is the root URL, flushed at once; request
    logs go to stderr.

    :param options: further :class:`~wmsync.emulator.app.EmulatorConfig` fields.
    """
    stream = out if out is not None else sys.stdout
    server, app, url = _build(
        repository, db_path, host, port, token, clock_offset_ms, False, options
    )
    running = RunningEmulator(server, app, url)
    stop = threading.Event()

    def request_stop(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        running.start(READY_TIMEOUT)
        stream.write(url + "\n")
        stream.flush()
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
