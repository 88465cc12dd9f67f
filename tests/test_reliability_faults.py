"""Faults in the client path: every kind of broken answer at every stage, on the parent
and on a child, through the command line.

Each case injects one persistent fault (emulator ``Fault`` switches) and runs
``wmsync sync`` in-process: the failed repository is named with its redacted URL and
what happened, the status and exit code are right (a child's fault fails that child
only; a parent's fault fails every child, or the whole run when the parent cannot be
read), nothing on stderr is a traceback, and a clean run afterwards converges.
A few cases also run as real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from cluster import create_job

from wmsync import cli, client, synchronize
from wmsync.emulator.app import Fault
from wmsync.emulator.server import start_in_thread

USER = "tester"
T_CALL, T_TRANSFER = 1.5, 2.5  # short, yet far above a loopback call on a loaded machine
STAGES = {
    "info": "replication/info",
    "export": "replication/export$",
    "download": "replication/exports/",
    "import": "replication/import",
    "nodes": "replication/nodes/update",
}
KINDS = ["timeout", "drop", "error", "http500", "truncate", "wrongtype", "html"]
# Every (kind, stage) pair, on the parent or on the child in turn, so that every stage
# and every kind is seen on both sides; WMSYNC_LONG=1 runs all 70 combinations.
CASES = [
    (where, stage, kind)
    for k, kind in enumerate(KINDS)
    for s, stage in enumerate(STAGES)
    for where in ("Parent", "Ohio")
    if os.environ.get("WMSYNC_LONG", "") not in ("", "0")
    or (where == "Parent") == ((k + s) % 2 == 0)
]
RealClient = client.WMServerClient


class FastClient(client.WMServerClient):
    """The real client with short timeouts and one quick retry (keeps the matrix fast)."""

    def __init__(self, url: str, **options: Any) -> None:
        options.update(timeout=T_CALL, transfer_timeout=T_TRANSFER, retries=1, backoff=0.0)
        super().__init__(url, **options)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    servers = {}
    try:
        for name in ("Parent", "Ohio", "AZ"):
            servers[name] = start_in_thread(name, base / f"{name}.sqlite")
        clients = {n: client.WMServerClient(s.url, user=USER) for n, s in servers.items()}
        yield servers, clients
        for c in clients.values():
            c.close()
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(client, "WMServerClient", FastClient)


def table(servers) -> str:
    return ";".join(f"{n} true {servers[n].url} ''" for n in ("Ohio", "AZ"))


def sync_args(servers, *extra):
    return [
        "sync",
        "--parent-url",
        servers["Parent"].url,
        "--parent-name",
        "Parent",
        "--children",
        table(servers),
        "--user",
        USER,
        "--timeout",
        str(T_CALL),
        *extra,
    ]


def make_fault(kind: str, stage: str) -> Fault:
    path = STAGES[stage]
    if kind == "timeout":
        slow = T_TRANSFER if stage in ("export", "download", "import") else T_CALL
        return Fault(path, "latency", seconds=slow + 5)  # released at the end
    if kind == "wrongtype" and stage == "download":  # a document labelled as JSON
        return Fault(path, kind, content_type="application/json")
    return Fault(path, kind)


def fingerprints(servers):
    return [s.store.fingerprint() for s in servers.values()]


@pytest.mark.parametrize("where,stage,kind", CASES)
def test_a_fault_gives_a_clear_error_and_the_right_status(
    cluster, fast, tmp_path, capsys, where, stage, kind
):
    servers, clients = cluster
    for name in servers:  # something to move in every direction
        create_job(clients[name], f"{name} {where} {stage} {kind}")
    target = servers[where]
    fault = make_fault(kind, stage)
    target.app.faults.append(fault)
    report = tmp_path / "report.json"
    try:
        code = cli.main(sync_args(servers, "--report", str(report)))
    finally:
        fault.release()
        target.app.faults.clear()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert fault.hits > 0
    data = json.loads(report.read_text())
    states = {c["name"]: c["state"] for c in data["children"]}
    if where == "Parent" and stage == "info":
        assert (code, data["status"]) == (2, -1)
        assert "parent Parent" in data["error"] and target.url in data["error"]
        assert "status -1" in out
    elif where == "Parent":
        assert (code, data["status"]) == (1, 2), out
        assert states == {"Ohio": "failed", "AZ": "failed"}
    else:
        assert (code, data["status"]) == (1, 1), out
        assert states == {"Ohio": "failed", "AZ": "synchronized"}
    for child in data["children"]:
        if child["state"] == "failed" and data["status"] > 0:
            error = child["error"]
            assert error.startswith("while "), error  # the line names the child once
            assert target.url in error, error  # the redacted URL of the failing server
            assert f"{child['name']}: FAILED: " in out
    # Nothing was lost: a clean run (the real client, normal timeouts) converges.
    clean = synchronize(
        servers["Parent"].url,
        "Parent",
        table(servers),
        user=USER,
        client_factory=lambda url: RealClient(url, user=USER),
    )
    assert clean.status == 0, clean.summary_lines()
    first, *others = fingerprints(servers)
    assert all(other == first for other in others)


@pytest.mark.parametrize(
    "where,stage,kind",
    [
        ("Parent", "info", "html"),
        ("Ohio", "download", "truncate"),
        ("Ohio", "import", "error"),
    ],
)
def test_as_a_process_no_traceback_reaches_the_user(cluster, where, stage, kind):
    servers, _ = cluster
    fault = make_fault(kind, stage)
    servers[where].app.faults.append(fault)
    try:
        for name in ("Parent", "Ohio"):
            create_job(cluster[1][name], f"process {where} {stage}")
        done = subprocess.run(
            [sys.executable, "-m", "wmsync", *sync_args(servers)],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:
        fault.release()
        servers[where].app.faults.clear()
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == (2 if where == "Parent" else 1), done.stdout + done.stderr
    assert "status" in done.stdout
