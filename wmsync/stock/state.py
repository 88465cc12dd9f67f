"""The state store: where the stock replica keeps, per stock repository, what the
replication extensions would have kept on the server (docs/design.md §10).

``state.sqlite`` (WAL) lists the stock repositories by name; each has a *shadow
repository* of its own beside it (``state.sqlite.d/<name>-<token>.sqlite``): a
:class:`wmsync.repository.store.Store` with GUIDs, version vectors, generations, node
rows and the conflict log, plus the tables below, written in the same transactions as
the shadow's elements:

- ``stock_seen``: each server record as last seen there (``kind``, the server's key:
  job id, ``job/hold id``, or ``job/activity key``), the GUID of its element ("" for an
  activity record the server logged as a side effect of the tool's own writes) and its
  view (:mod:`wmsync.stock.views`);
- ``stock_intents``: jobs the tool is writing to (server id -> GUID), set before the
  first write and cleared once the result has been read back; a scan that finds one
  knows the run was interrupted: it reads that job as the tool's own half-done write,
  never as a user's edit;
  (other kinds of row: ``JobType`` maps a server job type id to a GUID; ``Version``
  holds the version vector of the job version the server holds; ``Wrote`` the view
  last written to a job; ``Pending`` a job a first scan left for the next one);
- ``stock_meta``: ``scanned`` once the first scan is done, ``jobIdStart`` applied,
  ``incarnation`` (the token a new shadow counts its first versions under).

A state file that is deleted is rebuilt: a new shadow is made and filled by the next
run (jobs matched by id).
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Set, Tuple, Union

from wmsync.repository.store import Store

STATE_ENV = "WMSYNC_STATE"

_SHADOW_SCHEMA = """
CREATE TABLE IF NOT EXISTS stock_seen (
    kind TEXT NOT NULL,
    server_key TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    guid TEXT NOT NULL,
    view TEXT NOT NULL,
    PRIMARY KEY (kind, server_key)
);
CREATE INDEX IF NOT EXISTS stock_seen_guid ON stock_seen (guid);
CREATE INDEX IF NOT EXISTS stock_seen_job ON stock_seen (job_id);
CREATE TABLE IF NOT EXISTS stock_intents (job_id INTEGER PRIMARY KEY, guid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stock_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    shadow TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_claims (job_id INTEGER PRIMARY KEY, guid TEXT NOT NULL);
"""


def default_state_path() -> Path:
    """``WMSYNC_STATE``, else the user's local application data folder:
    ``%LOCALAPPDATA%\\WorkflowSync\\state.sqlite`` on Windows, else
    ``$XDG_STATE_HOME/WorkflowSync/state.sqlite`` (``~/.local/state`` by default)."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "WorkflowSync" / "state.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 60000")
    return conn


class StateStore:
    """The registry of shadow repositories (one file) and the shadows beside it."""

    def __init__(self, path: Union[str, os.PathLike[str], None] = None) -> None:
        self.path = Path(os.fspath(path)) if path is not None else default_state_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shadow_dir = self.path.with_name(self.path.name + ".d")
        self.fold_lock = threading.Lock()  # see JobClaims
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_REGISTRY_SCHEMA)
        finally:
            conn.close()

    def claims_for(self, job_ids: Iterable[int]) -> JobClaims:
        """The GUIDs the stock repositories of this store already gave *job_ids*."""
        wanted = set(job_ids)
        known: Dict[int, str] = {}
        if not wanted:
            return JobClaims(known)
        conn = _connect(self.path)
        try:
            rows = conn.execute(
                "SELECT job_id, guid FROM job_claims WHERE job_id BETWEEN ? AND ?",
                (min(wanted), max(wanted)),
            )
            known.update((int(r[0]), str(r[1])) for r in rows if int(r[0]) in wanted)
        finally:
            conn.close()
        return JobClaims(known)

    def save_claims(self, claims: JobClaims) -> None:
        """Record the claims a fold or a write made (the first claim of an id stays)."""
        if not claims.new:
            return
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO job_claims (job_id, guid) VALUES (?, ?)",
                sorted(claims.new.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        claims.new.clear()

    def name_for_url(self, url: str) -> Optional[str]:
        """The name a stock repository at *url* was registered under, if any (a
        command given only a URL then finds the repository's shadow)."""
        conn = _connect(self.path)
        try:
            rows = conn.execute("SELECT name, url FROM repositories").fetchall()
        finally:
            conn.close()
        key = url.rstrip("/").lower()
        found = [str(name) for name, known in rows if str(known).rstrip("/").lower() == key]
        return found[0] if len(found) == 1 else None

    def shadow(self, name: str, url: str) -> Store:
        """The shadow repository of *name* (made empty on first use; names are matched
        without regard to case, and the first spelling stays the repository's name)."""
        key = name.lower()
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT shadow, name FROM repositories WHERE name_key = ?", (key,)
            ).fetchone()
            if row is None:
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
                # A fresh token: a shadow left by a deleted state file is never reused.
                file = f"{safe}-{secrets.token_hex(4)}.sqlite"
                conn.execute(
                    "INSERT INTO repositories (name_key, name, url, shadow) VALUES (?, ?, ?, ?)",
                    (key, name, url, file),
                )
            else:
                file, name = row[0], row[1]  # the spelling it was first registered with
                conn.execute("UPDATE repositories SET url = ? WHERE name_key = ?", (url, key))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        store = Store(self.shadow_dir / file, name)
        with store.atomic() as session:
            for statement in _SHADOW_SCHEMA.split(";"):
                if statement.strip():
                    session.conn.execute(statement)
        return store


class JobClaims:
    """Which GUID a job id names across the stock repositories of one state store.

    Jobs are one per id in a cluster (docs/design.md §4), so a job a new shadow meets
    on a stock server is the job other stock repositories hold under that id: the
    first claim of an id names it for all of them. That is how a new or rebuilt state
    store matches jobs by id, also for copies that carry nothing of ours.
    """

    def __init__(self, known: Optional[Dict[int, str]] = None) -> None:
        self.known: Dict[int, str] = dict(known or {})
        self.new: Dict[int, str] = {}

    def get(self, job_id: int) -> Optional[str]:
        return self.known.get(job_id)

    def claim(self, job_id: int, guid: str) -> None:
        if job_id not in self.known:
            self.known[job_id] = guid
            self.new[job_id] = guid


class RepositoryLock:
    """One run at a time per stock repository, across processes.

    Two runs writing one stock server at once could both write the same hold or
    activity record (neither has recorded it yet). So a run holds a write transaction
    on ``<shadow>.lock`` while it uses the repository; the operating system's file lock
    goes away with the process, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self._conn: Optional[sqlite3.Connection] = sqlite3.connect(
            str(path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute("CREATE TABLE IF NOT EXISTS lock (x INTEGER)")
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            self._conn.close()
            self._conn = None
            raise

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None


# -- the shadow's own tables (used inside a Store transaction: ``session.conn``) -----------


def meta(conn: sqlite3.Connection, key: str) -> Optional[str]:
    row = conn.execute("SELECT value FROM stock_meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO stock_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def seen(conn: sqlite3.Connection, kind: str) -> Dict[str, Tuple[int, str, str]]:
    """``{server key: (job id, guid, view json)}`` of one kind."""
    rows = conn.execute(
        "SELECT server_key, job_id, guid, view FROM stock_seen WHERE kind = ?", (kind,)
    ).fetchall()
    return {r[0]: (int(r[1]), r[2], r[3]) for r in rows}


def seen_of_job(
    conn: sqlite3.Connection, kind: str, job_id: int
) -> Dict[str, Tuple[int, str, str]]:
    """Like :func:`seen`, for one job's holds or activity records."""
    rows = conn.execute(
        "SELECT server_key, job_id, guid, view FROM stock_seen WHERE kind = ? AND job_id = ?",
        (kind, job_id),
    ).fetchall()
    return {r[0]: (int(r[1]), r[2], r[3]) for r in rows}


def mapped_guids(conn: sqlite3.Connection, kind: str) -> Set[str]:
    rows = conn.execute("SELECT guid FROM stock_seen WHERE kind = ?", (kind,)).fetchall()
    return {r[0] for r in rows}


def set_seen(
    conn: sqlite3.Connection, kind: str, server_key: str, job_id: int, guid: str, view: str
) -> None:
    conn.execute(
        "INSERT INTO stock_seen (kind, server_key, job_id, guid, view) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (kind, server_key) DO UPDATE SET job_id = excluded.job_id, "
        "guid = excluded.guid, view = excluded.view",
        (kind, server_key, job_id, guid, view),
    )


def forget_job(conn: sqlite3.Connection, job_id: int) -> None:
    """Forget a job and its holds and activity records as seen on the server."""
    conn.execute("DELETE FROM stock_seen WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM stock_intents WHERE job_id = ?", (job_id,))


def intents(conn: sqlite3.Connection) -> Dict[int, str]:
    rows = conn.execute("SELECT job_id, guid FROM stock_intents").fetchall()
    return {int(r[0]): r[1] for r in rows}


def set_intent(conn: sqlite3.Connection, job_id: int, guid: str) -> None:
    conn.execute(
        "INSERT INTO stock_intents (job_id, guid) VALUES (?, ?) "
        "ON CONFLICT (job_id) DO UPDATE SET guid = excluded.guid",
        (job_id, guid),
    )


def clear_intent(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute("DELETE FROM stock_intents WHERE job_id = ?", (job_id,))


@contextmanager
def transaction(store: Store) -> Iterator[sqlite3.Connection]:
    """A shadow transaction for bookkeeping only (consumes no generation)."""
    with store.atomic() as session:
        yield session.conn
