"""The callback interface through which the engine reports messages and progress.

The engine never prints and never touches arcpy: the toolbox maps these calls to
``messages``/the step progressor, the CLI to logging. The engine calls a listener only
from the thread that called :func:`wmsync.synchronize` (arcpy is not thread-safe).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


class SyncListener:
    """Receives messages and progress from a run; every method may be left as it is."""

    def info(self, text: str) -> None:
        """An informative message (per child counts, what happened)."""

    def warning(self, text: str) -> None:
        """A warning: a skipped or failed child, a row time that disagrees."""

    def begin(self, total_steps: int, label: str) -> None:
        """The run has *total_steps* steps (one per child per phase)."""

    def step(self, label: str) -> None:
        """A step starts; *label* names the child and the phase."""

    def step_done(self) -> None:
        """The step that last started has ended (whatever its outcome)."""

    def cancelled(self) -> bool:
        """True when the user asked to stop; checked at every safe point."""
        return False


class QueuedListener(SyncListener):
    """The listener worker threads talk to: each call is queued, then replayed on the
    calling thread by :meth:`relay`, so the real listener only ever runs there."""

    def __init__(self) -> None:
        self._calls: queue.Queue[Callable[[SyncListener], None]] = queue.Queue()
        self._cancel = threading.Event()

    def info(self, text: str) -> None:
        self._calls.put(lambda target: target.info(text))

    def warning(self, text: str) -> None:
        self._calls.put(lambda target: target.warning(text))

    def begin(self, total_steps: int, label: str) -> None:
        self._calls.put(lambda target: target.begin(total_steps, label))

    def step(self, label: str) -> None:
        self._calls.put(lambda target: target.step(label))

    def step_done(self) -> None:
        self._calls.put(lambda target: target.step_done())

    def cancelled(self) -> bool:
        """True once :meth:`relay` has seen the user ask to stop."""
        return self._cancel.is_set()

    def replay(self, target: SyncListener) -> None:
        """Make the queued calls on *target*, in order (on the thread that owns it)."""
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            call(target)

    def relay(self, target: SyncListener) -> None:
        """:meth:`replay`, then ask *target* whether the user cancelled (a safe point)."""
        self.replay(target)
        if not self._cancel.is_set() and target.cancelled():
            self._cancel.set()
