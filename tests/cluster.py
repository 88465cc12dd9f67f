"""Test helpers: a cluster of live emulators, and what a repository holds as users see it.

Everything here reads repositories through the documented REST API only, so the
engine's work is judged the way a Workflow Manager user would see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from wmsync.client import WMServerClient

USER = "tester"


@dataclass
class Cluster:
    """A parent and children, each with a REST client; ``table`` is the child table."""

    parent: Any
    children: List[Any]
    clients: Dict[str, WMServerClient] = field(default_factory=dict)

    @property
    def names(self) -> List[str]:
        return [self.parent_name] + [self.name_of(c) for c in self.children]

    @property
    def parent_name(self) -> str:
        return self.name_of(self.parent)

    @staticmethod
    def name_of(server: Any) -> str:
        return str(server.url.rstrip("/").split("/")[-2])

    def table(self, time: str = "", connected: Optional[Dict[str, str]] = None) -> str:
        rows = []
        for child in self.children:
            name = self.name_of(child)
            flag = (connected or {}).get(name, "true")
            rows.append(f"{name} {flag} {child.url} {time or chr(39) * 2}")
        return ";".join(rows)

    def client(self, name: str) -> WMServerClient:
        return self.clients[name]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def make_cluster(emulator: Callable[..., Any], *names: str, **options: Any) -> Cluster:
    """Start a parent (first name) and children on loopback."""
    servers = [emulator(name, **options) for name in names]
    cluster = Cluster(servers[0], servers[1:])
    for server in servers:
        cluster.clients[cluster.name_of(server)] = WMServerClient(server.url, user=USER)
    return cluster


def generation(client: WMServerClient) -> int:
    return int(client.replication_info()["generation"])


def create_job(client: WMServerClient, name: str, **fields: Any) -> int:
    answer = client.post("jobs/create", jobTypeId=1, name=name, **fields)
    return int(answer["jobIds"][0])


def job_id_by_name(client: WMServerClient, name: str) -> int:
    for job_id in client.get("jobs")["jobIds"]:
        if client.get(f"jobs/{job_id}")["name"] == name:
            return int(job_id)
    raise AssertionError(f"no job named {name!r} on {client.display_url}")


def holdings(client: WMServerClient) -> Dict[str, Any]:
    """What a repository holds, keyed by GUID where there is one; local ids included
    (they must match too, as jobs are numbered from disjoint blocks)."""
    jobs: Dict[str, Tuple[Any, ...]] = {}
    job_types = {t["id"]: t for t in client.get("").get("jobTypes", [])}
    for job_id in client.get("jobs")["jobIds"]:
        job = client.get(f"jobs/{job_id}")
        notes = client.get(f"jobs/{job_id}/notes").get("notes")
        holds = sorted(
            (h["type"], h["holdComments"], h["releaseDate"] is not None)
            for h in client.get(f"jobs/{job_id}/holds")["holds"]
        )
        type_name = job_types.get(job["jobTypeId"], {}).get("name")
        jobs[job["guid"]] = (
            job["id"],
            job["name"],
            job["description"],
            job["priority"],
            job["assignedTo"],
            job["status"],
            type_name,
            notes,
            tuple(holds),
        )
    types = {}
    for type_id in job_types:
        detail = client.get(f"jobTypes/{type_id}")
        types[detail["guid"]] = (detail["name"], detail["description"])
    users = sorted(
        (u["userName"], u.get("fullName", "")) for u in client.get("community/users")["users"]
    )
    groups = sorted(
        (g["name"], tuple(sorted(g.get("users", []))))
        for g in (
            client.get(f"community/groups/{g['id']}")
            for g in client.get("community/groups")["groups"]
        )
    )
    return {"jobs": jobs, "jobTypes": types, "users": users, "groups": groups}


def assert_converged(cluster: Cluster) -> Dict[str, Any]:
    """Every repository holds the same jobs, job types, users and groups."""
    views = {name: holdings(cluster.client(name)) for name in cluster.names}
    first = views[cluster.parent_name]
    for name, view in views.items():
        for part in ("jobs", "jobTypes", "users", "groups"):
            assert view[part] == first[part], f"{name} differs from the parent in {part}"
    return first


class Clock:
    """A store clock for tests: starts at *start* (ms) and ticks 1 ms per reading."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now
