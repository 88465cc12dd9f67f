"""The export folder: export files, their gzip copies, and their removal.

An export file is removed as soon as one download of it has been sent completely,
and any export (downloaded or not) once it is older than the keep time (one hour by
default), swept on later export requests. So repeated runs never grow the server's
disk (``docs/protocol.md``, ``replication/export``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import IO, Callable, Iterator, List, Optional, Tuple

from wmsync import exchange

log = logging.getLogger("wmsync.emulator")

#: zlib level of gzip-served exports: 1 makes the XML about 9x smaller at about 7 ms per
#: MB; level 6 is only about 10 % smaller still, for three times the CPU.
EXPORT_GZIP_LEVEL = 1
_EXPORT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1024 * 1024


class ExportFolder:
    """The folder of one repository's exports.

    :param path: the folder (created if missing).
    :param keep_seconds: an export older than this is removed by :meth:`sweep`.
    :param clock: seconds since the epoch (``time.time``; tests inject their own).
    """

    def __init__(self, path: Path, keep_seconds: float, clock: Callable[[], float]) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.clock = clock
        path.mkdir(parents=True, exist_ok=True)

    def file_of(self, export_id: str) -> Optional[Path]:
        """The export file named by *export_id*, or ``None`` if there is no such export."""
        if not _EXPORT_ID_RE.match(export_id):
            return None
        path = self.path / f"{export_id}.jxl"
        return path if path.is_file() else None

    def files(self) -> List[Path]:
        """Every file in the folder (exports, gzip copies, partial files)."""
        return sorted(p for p in self.path.iterdir() if p.is_file())

    def sweep(self) -> int:
        """Remove what is older than the keep time; returns how many files went."""
        limit = self.clock() - self.keep_seconds
        removed = 0
        for path in self.files():
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError:  # gone already, or still open on a system that minds
                pass
        return removed

    def remove(self, export_id: str) -> None:
        """Remove an export and its gzip copy (what is still open is left to the sweep)."""
        for name in (f"{export_id}.jxl", f"{export_id}.jxl.gz"):
            try:
                (self.path / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                log.debug("export %s not removed yet: %s", name, error)

    def gzipped(self, path: Path) -> Path:
        """The gzip copy of an export, written the first time it is asked for (to a
        temporary name, then renamed, so concurrent downloads never see half of it).

        :raises FileNotFoundError: there is no such export.
        """
        packed = path.with_name(path.name + ".gz")
        if packed.is_file():
            return packed
        partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
        try:
            exchange.gzip_file(str(path), str(partial), compresslevel=EXPORT_GZIP_LEVEL)
            os.replace(partial, packed)
        finally:
            if partial.exists():
                partial.unlink()
        return packed

    def open_download(self, export_id: str, packed: bool) -> Tuple[Download, int]:
        """An export's bytes to send (its gzip copy when *packed*) and their size.

        :raises FileNotFoundError: there is no such export.
        """
        path = self.file_of(export_id)
        if path is None:
            raise FileNotFoundError(export_id)
        handle = open(self.gzipped(path) if packed else path, "rb")
        size = os.fstat(handle.fileno()).st_size
        return Download(handle, size, lambda: self.remove(export_id)), size


class Download:
    """A WSGI body streaming one export file; once every byte has been handed to the
    server, closing it removes the export (a download cut short leaves it)."""

    def __init__(self, handle: IO[bytes], size: int, on_complete: Callable[[], None]) -> None:
        self._handle = handle
        self._size = size
        self._sent = 0
        self._on_complete = on_complete

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._handle.read(_CHUNK)
            if not chunk:
                return
            yield chunk
            self._sent += len(chunk)  # counted once the server asks for more: sent

    def close(self) -> None:
        if self._handle.closed:
            return
        self._handle.close()
        if self._sent >= self._size:
            self._on_complete()
