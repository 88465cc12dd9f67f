"""Crash resume: ``wmsync sync`` killed with SIGKILL at each phase boundary.

The process is made to wait at the boundary by a ``stall`` fault on the request that
comes next (the request is never carried out); once the emulator sees it waiting, the
test kills the process. The next run must converge, without a full exchange, moving no
more than the interrupted run's windows again; a third run moves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cluster import assert_converged, create_job, make_cluster

from wmsync import plan, synchronize
from wmsync.emulator.app import Fault

USER = "tester"
STALL_SECONDS = 60.0  # longer than any test waits: the kill comes first


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def cli_args(cluster, *extra):
    return [
        sys.executable,
        "-m",
        "wmsync",
        "sync",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        "Parent",
        "--children",
        cluster.table(),
        "--user",
        USER,
        "--timeout",
        "120",
        *extra,
    ]


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stored_names(server):
    return {
        e.fields.get("name")
        for e in server.store.elements(include_deleted=False)
        if e.kind == "Job"
    }


# boundary -> (server, faults in order: the last one stalls, the ones before pass requests
# through), extra CLI arguments. One worker where the order of the children matters: with
# more, the kill may also catch the other child between the two node-row writes of its
# pull's commit (see the last boundary).
ONE = ["--max-workers", "1"]
BOUNDARIES = {
    # Ohio's sequence number is bumped for its pull (with its export); the parent's
    # import of Ohio's changes is being uploaded: Ohio is then ahead of what the parent
    # confirmed, which must not count as a restore (no full exchange next)
    "between the pull's sequence bump and its import": (
        "Parent",
        [("replication/import", None)],
        ONE,
    ),
    # the parent has imported Ohio's changes; Ohio's watermark update (its first node
    # update: the sequence bump went with its export) waits
    "pull import committed, watermark not": (
        "Ohio",
        [("replication/nodes/update", None)],
        ONE,
    ),
    # every pull committed; the push's export on the parent waits
    "between pull and push": ("Parent", [("replication/export$", None)], []),
    # one worker: parent node updates 1-2 are the pulls' commits, 3 Ohio's push commit
    # (the push's sequence bump went with the parent's export)
    "push import committed, watermark not": (
        "Parent",
        [("replication/nodes/update", 2), ("replication/nodes/update", None)],
        ONE,
    ),
    # Ohio's import is being uploaded when the process dies (one worker: AZ's push,
    # running beside it, could otherwise be caught between its own commit's two writes)
    "during the push import": ("Ohio", [("replication/import", None)], ONE),
    # Ohio's watermark and new syncId are written, the parent's copy of the syncId is not:
    # the pair's rows disagree, so the next run makes a full exchange with Ohio
    # (docs/design.md §4: watermarks are trusted only when both syncIds match) -- costlier, safe.
    "between the two node rows of a pull's commit": (
        "Parent",
        [("replication/nodes/update", None)],
        ONE,
    ),
}
FULL_NEXT = {"between the two node rows of a pull's commit": {"Ohio"}}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_sigkill_at_a_phase_boundary_resumes_without_loss(three, tmp_path, boundary):
    synchronize(three.parent.url, "Parent", three.table(), user=USER)  # registered
    parent, ohio, az = (three.client(n) for n in three.names)
    for i in range(3):
        create_job(parent, f"hq {i}")
        create_job(ohio, f"ohio {i}")
    create_job(az, "az 0")
    ohio.post(f"jobs/{create_job(ohio, 'ohio x')}/notes/update", notes="noted in Ohio")
    # The windows an uninterrupted run would move: pulls exactly, pushes = the parent's
    # own changes plus what the other children's pulls bring (the plan predicts both).
    windows = plan(three.parent.url, "Parent", three.table(), user=USER)
    pull = {e.spec.name: e.pull for e in windows.children}
    push = {e.spec.name: e.push_estimate for e in windows.children}
    assert not any(e.full_exchange for e in windows.children)

    name, specs, extra = BOUNDARIES[boundary]
    server = {"Parent": three.parent, "Ohio": three.children[0]}[name]
    faults = [
        Fault(path, "latency", seconds=0, times=times)
        if times
        else Fault(path, "stall", seconds=STALL_SECONDS)
        for path, times in specs
    ]
    server.app.faults.extend(faults)
    process = subprocess.Popen(
        cli_args(three, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: faults[-1].hits > 0, f"the run to reach '{boundary}'")
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
        for fault in faults:
            fault.release()
        server.app.faults.clear()
    assert process.returncode == -signal.SIGKILL

    # What had happened when the process died.
    parent_names = stored_names(three.parent)
    ohio_names = stored_names(three.children[0])
    if boundary in (
        "pull import committed, watermark not",
        "between the two node rows of a pull's commit",
    ):
        assert {"ohio 0", "ohio x"} <= parent_names
    if boundary in ("between pull and push", "push import committed, watermark not"):
        assert {"ohio 0", "az 0"} <= parent_names
    if boundary == "push import committed, watermark not":
        assert {"hq 0", "az 0"} <= ohio_names
    if boundary == "during the push import":
        assert "hq 0" not in ohio_names

    # The next run converges, redoing no more than the interrupted windows.
    report = tmp_path / "resume.json"
    done = subprocess.run(
        cli_args(three, "--report", str(report)),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text())
    for child in data["children"]:
        assert child["state"] == "synchronized"
        if child["name"] in FULL_NEXT.get(boundary, ()):
            assert child["full_exchange"], child
            continue
        assert not child["full_exchange"], child
        assert child["sent"] <= pull[child["name"]], (child, pull)
        assert child["received"] <= push[child["name"]], (child, push)
    view = assert_converged(three)
    names = sorted(job[1] for job in view["jobs"].values())
    assert names == sorted(["hq 0", "hq 1", "hq 2", "ohio 0", "ohio 1", "ohio 2", "ohio x", "az 0"])
    assert {job[1]: job[7] for job in view["jobs"].values()}["ohio x"] == "noted in Ohio"
    again = synchronize(three.parent.url, "Parent", three.table(), user=USER)
    assert again.status == 0
    assert sum(c.sent + c.received for c in again.children) == 0
