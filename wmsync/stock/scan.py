"""Reading a stock server through Esri's documented operations: the configuration and
every job with its notes, holds and activity (docs/design.md §10, change detection).

A scan costs about four requests per job; they run with bounded parallelism over the
client's keep-alive connections. A job that disappears while it is being read (404) is
left out of the snapshot *and* marked unreadable, so that the fold neither adds nor
deletes it on the strength of a half-read.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set

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


@dataclass
class Snapshot:
    config: Config
    jobs: Dict[int, JobRead]
    unreadable: Set[int]


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
    jobs: Dict[int, JobRead] = {}
    unreadable: Set[int] = set()

    def one(job_id: int) -> None:
        try:
            jobs[job_id] = read_job(client, job_id)
        except NotFound:
            unreadable.add(job_id)

    if ids:
        with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(ids)))) as pool:
            for future in [pool.submit(one, job_id) for job_id in ids]:
                future.result()
    return Snapshot(config, jobs, unreadable)
