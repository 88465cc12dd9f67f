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
    out(f"  {name}: {len(snap['jobs'])} jobs, job types {snap['jobTypes']}, users {snap['users']}")
    for job_id, job_name, notes, holds in snap["jobs"]:
        extra = f"  notes: {notes!r}" if notes else ""
        extra += f"  holds: {holds}" if holds else ""
        out(f"      job {job_id}: {job_name}{extra}")


def run_demo(out: Printer = print) -> int:
    """Run the demonstration; returns 0 when all three repositories converged."""
    from .emulator.server import start_in_thread

    names = ["Parent", "Ohio_Repository", "AZ_Repository"]
    with tempfile.TemporaryDirectory(prefix="wmsync-demo-") as folder, ExitStack() as stack:
        servers = [
            stack.enter_context(start_in_thread(name, f"{folder}/{name}.sqlite")) for name in names
        ]
        clients = [stack.enter_context(WMServerClient(s.url, user=DEMO_USER)) for s in servers]
        out("Started three Workflow Manager emulators on loopback:")
        for name, server in zip(names, servers):
            out(f"  {name:16} {server.url}")

        table = ";".join(
            f"{name} true {server.url} ''" for name, server in zip(names[1:], servers[1:])
        )
        out("\nConnecting the cluster: the first run registers each child with the parent")
        out("and hands it its own block of job ids, so a job keeps its id everywhere.")
        first = synchronize(
            servers[0].url, names[0], table, user=DEMO_USER, listener=_PrintListener(out)
        )
        out(f"  status {first.status}")

        out("\nMaking changes on each repository ...")
        _make_changes(*clients)
        for name, client in zip(names, clients):
            _show(out, name, snapshot(client))

        out(f"\nSynchronize Job Data\n  parent: {names[0]} {servers[0].url}")
        out(f"  children: {first.last_sync_text}")
        result = synchronize(
            servers[0].url,
            names[0],
            first.last_sync_text,
            user=DEMO_USER,
            listener=_PrintListener(out),
        )
        out(f"  status {result.status}")
        out(f"  Last Synchronized: {result.last_sync_text}")

        out("\nAfter the synchronization:")
        snaps = [snapshot(client) for client in clients]
        for name, snap in zip(names, snaps):
            _show(out, name, snap)
        same = all(snap == snaps[0] for snap in snaps)

        out("\nA second run, fed with the Last Synchronized table, moves nothing:")
        again = synchronize(
            servers[0].url,
            names[0],
            result.last_sync_text,
            user=DEMO_USER,
            listener=_PrintListener(out),
        )
        moved = sum(c.sent + c.received for c in again.children)
        out(f"  status {again.status}, elements moved: {moved}")

        if first.status == 0 and result.status == 0 and same and again.status == 0 and moved == 0:
            out(f"\nOK: all three repositories hold the same {len(snaps[0]['jobs'])} jobs.")
            return 0
        out("\nFAILED: the repositories did not converge.")
        return 1


# ---------------------------------------------------------------------------
# wmsync demo --stock


def _stock_changes(parent: WMServerClient, ohio: WMServerClient, az: WMServerClient) -> None:
    """What users do on three stock servers between two runs (ids in each one's block)."""
    types = {t["name"]: t["id"] for t in parent.get("").get("jobTypes", [])}
    parent.post("jobs/create", jobTypeId=types["Edit Data"], name="HQ review", priority=3)
    ohio_job = ohio.post("jobs/create", jobTypeId=1, name="Ohio parcels")["jobIds"][0]
    ohio.post(f"jobs/{ohio_job}/notes/update", notes="Started by the Ohio office.")
    ohio.post(f"jobs/{ohio_job}/holds/create", type=1, comments="Waiting for imagery")
    az_jobs = [
        az.post("jobs/create", jobTypeId=1, name=f"AZ roads {n}")["jobIds"][0] for n in (1, 2)
    ]
    az.post(f"jobs/{az_jobs[0]}/update", properties='{"name": "AZ roads (north)"}')
    az.post(f"jobs/{az_jobs[1]}/activity/logAction", type=7, comments="Checked on site")


def _writes(client: WMServerClient) -> int:
    """Jobs, holds and activity records on a server: what a run that writes adds to."""
    ids = client.get("jobs").get("jobIds", [])
    return len(ids) + sum(
        len(client.get(f"jobs/{i}/holds").get("holds", []))
        + len(client.get(f"jobs/{i}/activity").get("activity", []))
        for i in ids
    )


def run_stock_demo(out: Printer = print) -> int:
    """Three stock servers (no replication extensions: Esri's documented operations
    only), changed on each, synchronized through a state store in a temporary folder;
    returns 0 when all three converged and a second run wrote nothing."""
    from .emulator.server import start_in_thread
    from .emulator.site import SiteConfig

    names = ["Parent", "Ohio_Repository", "AZ_Repository"]
    # What an administrator set up in Workflow Manager Administrator on every server.
    site = SiteConfig(job_types=(("Edit Data", "Edit parcels"),))
    with tempfile.TemporaryDirectory(prefix="wmsync-demo-") as folder, ExitStack() as stack:
        servers = [
            stack.enter_context(
                start_in_thread(name, f"{folder}/{name}.sqlite", stock=True, site=site)
            )
            for name in names
        ]
        clients = [stack.enter_context(WMServerClient(s.url, user=DEMO_USER)) for s in servers]
        state = f"{folder}/state/state.sqlite"
        out(
            "Started three STOCK Workflow Manager servers (emulated, no replication "
            "extensions) on loopback:"
        )
        for name, server in zip(names, servers):
            out(f"  {name:16} {server.url}")
        out(f"State store (what the extensions would keep on the server): {state}")

        table = ";".join(
            f"{name} true {server.url} ''" for name, server in zip(names[1:], servers[1:])
        )
        out(
            "\nConnecting the cluster: each stock child gets its block of job ids "
            "(updateConfigProperties JOB_ID_START_VALUE)."
        )
        first = synchronize(
            servers[0].url,
            names[0],
            table,
            user=DEMO_USER,
            listener=_PrintListener(out),
            state=state,
        )
        out(f"  status {first.status}")

        out("\nMaking changes on each server ...")
        _stock_changes(*clients)
        for name, client in zip(names, clients):
            _show(out, name, snapshot(client))

        out(f"\nSynchronize Job Data\n  parent: {names[0]} {servers[0].url}")
        result = synchronize(
            servers[0].url,
            names[0],
            first.last_sync_text,
            user=DEMO_USER,
            listener=_PrintListener(out),
            state=state,
        )
        out(f"  status {result.status}")

        out("\nAfter the synchronization:")
        snaps = [snapshot(client) for client in clients]
        for name, snap in zip(names, snaps):
            _show(out, name, snap)
        same = all(snap["jobs"] == snaps[0]["jobs"] for snap in snaps)

        out("\nA second run writes nothing to any server:")
        before = [_writes(client) for client in clients]
        again = synchronize(
            servers[0].url,
            names[0],
            result.last_sync_text,
            user=DEMO_USER,
            listener=_PrintListener(out),
            state=state,
        )
        unchanged = [_writes(client) for client in clients] == before
        out(f"  status {again.status}, servers unchanged: {unchanged}")

        if first.status == 0 and result.status == 0 and same and again.status == 0 and unchanged:
            out(f"\nOK: all three stock servers hold the same {len(snaps[0]['jobs'])} jobs.")
            return 0
        out("\nFAILED: the stock servers did not converge.")
        return 1
