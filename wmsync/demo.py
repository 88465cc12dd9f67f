"""``wmsync demo``: a parent and two children on loopback, changed, synchronized, compared.

Everything goes through the documented REST API and the real engine, exactly as a
scheduled ``wmsync sync`` would; the repositories live in a temporary folder that is
removed afterwards.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from typing import Any, Callable, Dict, List, Tuple

from .client import WMServerClient
from .engine import synchronize
from .progress import SyncListener

Printer = Callable[[str], None]
DEMO_USER = "demo_admin"


class _PrintListener(SyncListener):
    def __init__(self, out: Printer) -> None:
        self.out = out

    def info(self, text: str) -> None:
        self.out(f"  {text}")

    def warning(self, text: str) -> None:
        self.out(f"  WARNING: {text}")


def snapshot(client: WMServerClient) -> Dict[str, Any]:
    """What a repository holds, as users see it: jobs (id, name, notes, holds), job types,
    users and groups."""
    jobs: List[Tuple[int, str, str, int]] = []
    for job_id in client.get("jobs").get("jobIds", []):
        job = client.get(f"jobs/{job_id}")
        notes = client.get(f"jobs/{job_id}/notes").get("notes") or ""
        holds = client.get(f"jobs/{job_id}/holds").get("holds", [])
        jobs.append((int(job["id"]), str(job["name"]), str(notes), len(holds)))
    root = client.get("")
    users = client.get("community/users").get("users", [])
    groups = client.get("community/groups").get("groups", [])
    return {
        "jobs": sorted(jobs),
        "jobTypes": sorted(str(t["name"]) for t in root.get("jobTypes", [])),
        "users": sorted(str(u["userName"]) for u in users),
        "groups": sorted(str(g["name"]) for g in groups),
    }


def _make_changes(parent: WMServerClient, ohio: WMServerClient, az: WMServerClient) -> None:
    parent.post("jobTypes/create", name="Edit Data", description="Edit parcels")
    parent.post("jobs/create", jobTypeId=1, name="HQ review", priority=3)
    ohio.post("community/users/create", userName="ohio_editor", fullName="Ohio Editor")
    created = ohio.post("jobs/create", jobTypeId=1, name="Ohio parcels", numJobs=1)
    job_id = created["jobIds"][0]
    ohio.post(f"jobs/{job_id}/notes/update", notes="Started by the Ohio office.")
    ohio.post(f"jobs/{job_id}/holds/create", type=1, comments="Waiting for imagery")
    az_jobs = az.post("jobs/create", jobTypeId=1, name="AZ roads", numJobs=2)["jobIds"]
    az.post(f"jobs/{az_jobs[0]}/update", properties='{"name": "AZ roads (north)"}')


def _show(out: Printer, name: str, snap: Dict[str, Any]) -> None:
    out(f"  {name}: {len(snap['jobs'])} jobs, job types {snap['jobTypes']}, "
        f"users {snap['users']}")
    for job_id, job_name, notes, holds in snap["jobs"]:
        extra = f"  notes: {notes!r}" if notes else ""
        extra += f"  holds: {holds}" if holds else ""
        out(f"      job {job_id}: {job_name}{extra}")


def run_demo(out: Printer = print) -> int:
    """Run the demonstration; returns 0 when all three repositories converged."""
    from .emulator.server import start_in_thread

    names = ["Parent", "Ohio_Repository", "AZ_Repository"]
    with tempfile.TemporaryDirectory(prefix="wmsync-demo-") as folder, ExitStack() as stack:
        servers = [stack.enter_context(start_in_thread(name, f"{folder}/{name}.sqlite"))
                   for name in names]
        clients = [stack.enter_context(WMServerClient(s.url, user=DEMO_USER)) for s in servers]
        out("Started three Workflow Manager emulators on loopback:")
        for name, server in zip(names, servers):
            out(f"  {name:16} {server.url}")

        table = ";".join(f"{name} true {server.url} ''"
                         for name, server in zip(names[1:], servers[1:]))
        out("\nConnecting the cluster: the first run registers each child with the parent")
        out("and hands it its own block of job ids, so a job keeps its id everywhere.")
        first = synchronize(servers[0].url, names[0], table, user=DEMO_USER,
                            listener=_PrintListener(out))
        out(f"  status {first.status}")

        out("\nMaking changes on each repository ...")
        _make_changes(*clients)
        for name, client in zip(names, clients):
            _show(out, name, snapshot(client))

        out(f"\nSynchronize Job Data\n  parent: {names[0]} {servers[0].url}")
        out(f"  children: {first.last_sync_text}")
        result = synchronize(servers[0].url, names[0], first.last_sync_text, user=DEMO_USER,
                             listener=_PrintListener(out))
        out(f"  status {result.status}")
        out(f"  Last Synchronized: {result.last_sync_text}")

        out("\nAfter the synchronization:")
        snaps = [snapshot(client) for client in clients]
        for name, snap in zip(names, snaps):
            _show(out, name, snap)
        same = all(snap == snaps[0] for snap in snaps)

        out("\nA second run, fed with the Last Synchronized table, moves nothing:")
        again = synchronize(servers[0].url, names[0], result.last_sync_text, user=DEMO_USER,
                            listener=_PrintListener(out))
        moved = sum(c.sent + c.received for c in again.children)
        out(f"  status {again.status}, elements moved: {moved}")

        if first.status == 0 and result.status == 0 and same and again.status == 0 \
                and moved == 0:
            out(f"\nOK: all three repositories hold the same {len(snaps[0]['jobs'])} jobs.")
            return 0
        out("\nFAILED: the repositories did not converge.")
        return 1
