"""Shared fixtures: a clean environment for every test, and live emulators on loopback.

``emulator`` is a factory: ``emulator("Parent")`` starts that repository on 127.0.0.1
(port 0, its own SQLite file under ``tmp_path``) in a thread, waits until it accepts
connections, and stops it when the test ends, whatever happens (an ``ExitStack``).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any, Callable, Iterator

import pytest

#: The one list of what a developer's shell must not bring into a test (each name also
#: in lower case): secrets, the toolbox's acting user, proxies and CA bundle overrides.
_CLEARED = (
    "WMSYNC_TOKEN",
    "WMSYNC_PASSWORD",
    "WMSYNC_SERVER_TOKEN",
    "WMSYNC_USER",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, password, user, proxy or CA bundle from the developer's shell reaches a test."""
    for name in _CLEARED:
        for variant in {name, name.lower()}:
            if variant in os.environ:
                monkeypatch.delenv(variant)


@pytest.fixture
def emulator(tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Start emulated repositories: ``emulator(name="Parent", **start_in_thread options)``.

    Returns a :class:`wmsync.emulator.server.RunningEmulator` (``.url``, ``.store``,
    ``.app``); a second call with the same name serves the same database file (a
    restart). All are stopped at teardown.
    """
    from wmsync.emulator.server import start_in_thread

    with ExitStack() as stack:

        def start(name: str = "Parent", **options: Any) -> Any:
            db_path = options.pop("db_path", None) or tmp_path / f"{name}.sqlite"
            running = start_in_thread(name, db_path, **options)
            stack.callback(running.stop)
            return running

        yield start
