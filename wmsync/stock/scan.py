"""Reading a stock server through Esri's documented operations: the configuration and
every job with its notes, holds and activity (docs/design.md §10, change detection).

A scan costs about four requests per job; they run with bounded parallelism over the
client's keep-alive connections. A job that disappears while it is being read (404) is
left out of the snapshot *and* marked unreadable, so that the fold neither adds nor
deletes it on the strength of a half-read.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set

from wmsync.client import WMServerClient
from wmsync.errors import NotFound, ProtocolError

#: Requests in flight while a repository is scanned.
SCAN_PARALLELISM = 8


@dataclass
class JobRead:
    """One job as a server answered it."""

    job: Dict[str, Any]
    notes: str
    holds: List[Dict[str, Any]]
    activity: List[Dict[str, Any]]


@dataclass
class Config:
    """A stock server's configuration, by what identifies each item."""

    job_types: Dict[int, str] = field(default_factory=dict)  # id -> name
    job_type_details: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    users: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # lower name -> user
    groups: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # lower name -> group

    def job_type_id(self, name: str) -> Optional[int]:
        for ident, known in self.job_types.items():
            if known == name:
                return ident
        return None


class SpilledJobs(Mapping[int, JobRead]):
    """The jobs of a scan, kept in a private temporary SQLite file rather than in
    memory: a scan of 10^4 jobs would otherwise hold every answer at once (about 4 KB
    a job), and the fold reads them one at a time anyway. Only the ids stay in memory.
    Safe to fill from the scan's threads."""

    def __init__(self) -> None:
        # An empty file name is SQLite's private temporary database, removed on close.
        self._conn = sqlite3.connect("", check_same_thread=False)
        self._conn.execute("PRAGMA cache_size = -1024")  # KiB: the file holds the rest
        self._conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, answer TEXT NOT NULL)")
        self._ids: Set[int] = set()
        self._lock = threading.Lock()

    def put(self, job_id: int, read: JobRead) -> None:
        text = json.dumps([read.job, read.notes, read.holds, read.activity])
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (job_id, text))
            self._ids.add(job_id)

    def __getitem__(self, job_id: int) -> JobRead:
        if job_id not in self._ids:
            raise KeyError(job_id)
        with self._lock:
            row = self._conn.execute("SELECT answer FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job, notes, holds, activity = json.loads(row[0])
        return JobRead(job=job, notes=notes, holds=holds, activity=activity)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass
class Snapshot:
    config: Config
    jobs: Mapping[int, JobRead]
    unreadable: Set[int]

    def close(self) -> None:
        """Let go of the jobs' temporary file (the snapshot is not used afterwards)."""
        if isinstance(self.jobs, SpilledJobs):
            self.jobs.close()


def _list(answer: Mapping[str, Any], key: str, what: str) -> List[Any]:
    value = answer.get(key)
    if not isinstance(value, list):
        raise ProtocolError(f"{what} answered without a {key} list")
    return value


def read_config(client: WMServerClient) -> Config:
    config = Config()
    root = client.service_info()
    for item in root.get("jobTypes") or []:
        if isinstance(item, Mapping) and item.get("id") is not None:
            config.job_types[int(item["id"])] = str(item.get("name", ""))
    for type_id in config.job_types:
        detail = client.get(f"jobTypes/{type_id}")
        config.job_type_details[type_id] = dict(detail)
    for user in _list(client.get("community/users"), "users", "community/users"):
        if isinstance(user, Mapping) and user.get("userName"):
            config.users[str(user["userName"]).lower()] = dict(user)
    for group in _list(client.get("community/groups"), "groups", "community/groups"):
        if isinstance(group, Mapping) and group.get("name"):
            config.groups[str(group["name"]).lower()] = dict(group)
    return config


def read_job(client: WMServerClient, job_id: int) -> JobRead:
    job = client.get(f"jobs/{job_id}")
    notes = client.get(f"jobs/{job_id}/notes").get("notes")
    holds = _list(client.get(f"jobs/{job_id}/holds"), "holds", f"jobs/{job_id}/holds")
    activity = _list(client.get(f"jobs/{job_id}/activity"), "activity", f"jobs/{job_id}/activity")
    return JobRead(
        job=dict(job),
        notes=str(notes or ""),
        holds=[dict(h) for h in holds if isinstance(h, Mapping)],
        activity=[dict(a) for a in activity if isinstance(a, Mapping)],
    )


def job_ids(client: WMServerClient) -> List[int]:
    return sorted(int(i) for i in _list(client.get("jobs"), "jobIds", "jobs"))


def scan(client: WMServerClient, parallelism: int = SCAN_PARALLELISM) -> Snapshot:
    """Read the whole server: configuration, then every job."""
    config = read_config(client)
    ids = job_ids(client)
    jobs = SpilledJobs()
    unreadable: Set[int] = set()

    def one(job_id: int) -> None:
        try:
            jobs.put(job_id, read_job(client, job_id))
        except NotFound:
            unreadable.add(job_id)

    try:
        _each(ids, one, parallelism)
    except BaseException:
        jobs.close()
        raise
    return Snapshot(config, jobs, unreadable)


def _each(ids: List[int], work: Callable[[int], None], parallelism: int) -> None:
    """Run *work* for every id on at most *parallelism* threads that take the next id as
    they finish one: no queue of 10^4 pending futures, so memory stays flat. The first
    error stops the others (after the id each is on) and is raised."""
    pending = iter(ids)
    taking = threading.Lock()
    errors: List[BaseException] = []

    def worker() -> None:
        while not errors:
            with taking:
                job_id = next(pending, None)
            if job_id is None:
                return
            try:
                work(job_id)
            except BaseException as exc:  # handed to the caller below
                errors.append(exc)
                return

    threads = max(1, min(parallelism, len(ids)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    if errors:
        raise errors[0]
