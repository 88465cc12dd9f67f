"""Clusters of emulated repositories for the benchmarks, each emulator in its own process.

Setup writes straight into the SQLite files through :class:`wmsync.repository.store.Store`
(bulk loading is not what is measured); everything measured goes through HTTP. Every
process started here is stopped in ``close()`` (terminate, then kill after a timeout),
and servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import AbstractSet, Dict, Iterator, List, Optional, Sequence

from wmsync.repository.store import Store

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parent.parent


class Emulator:
    """``python -m wmsync.emulator`` serving one repository on a free loopback port."""

    def __init__(self, name: str, db_path: Path, log_path: Path) -> None:
        self.name = name
        self.db_path = db_path
        self._log = open(log_path, "ab")  # request logs: never a pipe that could fill up
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wmsync.emulator",
                "--repository",
                name,
                "--db",
                str(db_path),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
        )
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise RuntimeError(f"emulator {self.name} did not start")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 1)
                if not chunk:
                    raise RuntimeError(f"emulator {self.name} closed its output")
                line += chunk
        return line.decode().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class Cluster:
    """A parent and *children* repositories in *workdir*; created empty (defaults only)."""

    def __init__(self, workdir: Path, label: str, children: int) -> None:
        self.workdir = workdir / label
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.parent_name = "Parent"
        self.child_names = [f"Child{i + 1}" for i in range(children)]
        self.stores: Dict[str, Store] = {}
        for name in [self.parent_name, *self.child_names]:
            self.stores[name] = Store(self.workdir / f"{name}.sqlite", name)
        self.emulators: Dict[str, Emulator] = {}

    def start(self) -> None:
        for name, store in self.stores.items():
            self.emulators[name] = Emulator(name, store.path, self.workdir / f"{name}.log")

    def close(self) -> None:
        for emulator in self.emulators.values():
            emulator.stop()
        self.emulators.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def parent_url(self) -> str:
        return self.emulators[self.parent_name].url

    def table(self, names: Optional[Sequence[str]] = None) -> List[List[str]]:
        """The child value table, as rows."""
        return [
            [name, "true", self.emulators[name].url, ""] for name in (names or self.child_names)
        ]

    def job_ids(self, name: str, count: int, skip: int = 0) -> List[int]:
        """The ids of *count* live jobs of repository *name*, after the first *skip*."""
        with self.stores[name].reading() as session:
            rows = session.conn.execute(
                "SELECT local_id FROM elements WHERE kind = 'Job' AND deleted = 0 "
                "ORDER BY local_id LIMIT ? OFFSET ?",
                (count, skip),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def edit(self, name: str, count: int, stamp: str) -> int:
        """Change *count* jobs on repository *name* as local edits (one transaction).

        Each child edits jobs of its own (by its position), so runs have no conflicts.
        """
        names = [self.parent_name, *self.child_names]
        ids = self.job_ids(name, count, skip=names.index(name) * count)
        return self.stores[name].bulk_update_jobs(ids, {"description": stamp})

    @contextmanager
    def pinned(self, cpus: AbstractSet[int]) -> Iterator[None]:
        """Run this process (and so every client run it starts) and every emulator on
        *cpus* only; each gets its former CPUs back afterwards. Linux only.

        Affinity belongs to a thread, and a new thread takes its creator's: every
        thread of every process is pinned (an emulator serves from a thread of its own,
        which starts one per request)."""
        pids = [os.getpid(), *(e.process.pid for e in self.emulators.values())]
        threads = [int(tid) for pid in pids for tid in os.listdir(f"/proc/{pid}/task")]
        before = {tid: os.sched_getaffinity(tid) for tid in threads}
        try:
            for tid in threads:
                os.sched_setaffinity(tid, cpus)
            yield
        finally:
            for tid, allowed in before.items():
                try:
                    os.sched_setaffinity(tid, allowed)
                except ProcessLookupError:  # a thread that ended meanwhile
                    pass

    def converged(self) -> bool:
        """True when every repository holds the same elements (fingerprints)."""
        prints = [store.fingerprint() for store in self.stores.values()]
        return all(p == prints[0] for p in prints[1:])
