"""The callback interface through which the engine reports messages and progress.

The engine never prints and never touches arcpy: the toolbox maps these calls to
``messages``/the step progressor, the CLI to logging. The engine calls a listener only
from the thread that called :func:`wmsync.synchronize` (arcpy is not thread-safe).
"""

from __future__ import annotations


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
