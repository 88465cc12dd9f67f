"""What one emulated repository is told at start: :class:`EmulatorConfig`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from wmsync import exchange

from .faults import Fault
from .site import SiteConfig


@dataclass
class EmulatorConfig:
    """Everything one emulated repository needs; nothing is read at import time.

    :ivar repository: the repository (and service) name.
    :ivar db_path: its SQLite file (created with the default configuration if new).
    :ivar token: when set, every request must carry it (499 without one, 498 when wrong).
    :ivar clock_offset_ms: added to this server's clock (clock-skew tests).
    :ivar max_content_length: the largest request body accepted, in bytes.
    :ivar max_document_bytes: the largest (decompressed) exchange document imported.
    :ivar work_dir: where exports and import spools go (default ``<db_path>.d``).
    :ivar export_keep_seconds: an export not downloaded is removed after this long.
    :ivar fetch_timeout: seconds to wait when fetching a ``jxlURL``.
    :ivar gzip_exports: serve an export gzip-compressed (``Content-Encoding: gzip``) to a
        client whose ``Accept-Encoding`` allows it; the compressed copy is written once,
        beside the export.
    :ivar faults: injected failures (see :class:`Fault`); the list can be changed
        while the server runs (``app.faults``).
    :ivar stock: answer only Esri's documented operations, as a stock server does
        (``docs/protocol.md``, "Stock mode of the emulator").
    :ivar site: configuration items added at start when missing (``--config FILE``).
    :ivar wall_clock: seconds since the epoch, for the age of exports (tests inject one).
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
    stock: bool = False
    site: Optional[SiteConfig] = None
    wall_clock: Callable[[], float] = time.time
