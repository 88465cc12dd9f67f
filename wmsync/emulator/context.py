"""What every handler may use: :class:`Context` (one per emulated repository)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wmsync.repository.store import Store

from .config import EmulatorConfig
from .exports import ExportFolder


@dataclass(frozen=True)
class Context:
    """One emulated repository as the handlers see it.

    :ivar config: the server's options.
    :ivar store: the repository.
    :ivar exports: the folder its exports are written to and served from.
    :ivar spool_dir: where an incoming document is kept while it is imported.
    """

    config: EmulatorConfig
    store: Store
    exports: ExportFolder
    spool_dir: Path

    @property
    def repository(self) -> str:
        return self.config.repository
