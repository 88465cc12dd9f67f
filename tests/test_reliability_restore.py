"""Restores and rebuilds (docs/design.md §4, "Restores and rebuilds"), against emulators
on loopback with real SQLite files.

A restore here is a real one: the server is stopped, its database files are replaced by
a copy taken earlier with SQLite's backup API, and it is started again on the same
port; or the copy is written back into the live file with the backup API while the
server runs. A rebuild starts the server on a new, empty database under the same name.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from tests.cluster import Cluster, assert_converged, create_job, job_id_by_name, make_cluster
from wmsync import synchronize
from wmsync.emulator.app import Fault
from wmsync.progress import SyncListener

USER = "tester"


class Recorder(SyncListener):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: List[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)


def sync(cluster: Cluster, listener: Any = None) -> Any:
    return synchronize(
        cluster.parent.url, cluster.parent_name, cluster.table(), user=USER, listener=listener
    )


def backup(db_path: Any, dest: Path) -> Path:
    """A consistent copy of a live database, made with SQLite's backup API."""
    source = sqlite3.connect(str(db_path))
    target = sqlite3.connect(str(dest))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return dest


def _files(db_path: Any) -> List[Path]:
    return [Path(f"{db_path}{suffix}") for suffix in ("", "-wal", "-shm")]


class Servers:
    """Restarts, restores and rebuilds of one cluster's servers on their own ports."""

    def __init__(self, emulator: Callable[..., Any], cluster: Cluster) -> None:
        self.emulator = emulator
        self.cluster = cluster

    def _running(self, name: str) -> Any:
        servers = [self.cluster.parent, *self.cluster.children]
        return next(s for s in servers if Cluster.name_of(s) == name)

    def _replace(self, name: str, started: Any) -> None:
        if Cluster.name_of(self.cluster.parent) == name:
            self.cluster.parent = started
        else:
            self.cluster.children = [
                started if Cluster.name_of(c) == name else c for c in self.cluster.children
            ]

    def restore_offline(self, name: str, copy: Path) -> None:
        """Stop the server, put the copy back in place of its files, start it again."""
        server = self._running(name)
        db_path, port = server.db_path, server.port
        server.stop()
        for path in _files(db_path):
            if path.exists():
                path.unlink()
        Path(db_path).write_bytes(copy.read_bytes())
        self._replace(name, self.emulator(name, db_path=db_path, port=port))

    def restore_in_place(self, name: str, copy: Path) -> None:
        """Write the copy back into the live file with the backup API while it runs."""
        backup(copy, Path(self._running(name).db_path))

    def rebuild(self, name: str) -> None:
        """Stop the server and start it on a new, empty database under the same name."""
        server = self._running(name)
        db_path, port = server.db_path, server.port
        server.stop()
        for path in _files(db_path):
            if path.exists():
                path.unlink()
        self._replace(name, self.emulator(name, db_path=db_path, port=port))

    def restore(self, how: str, name: str, copy: Path) -> None:
        if how == "offline":
            self.restore_offline(name, copy)
        else:
            self.restore_in_place(name, copy)


def description(client: Any, job_id: int) -> str:
    return str(client.get(f"jobs/{job_id}")["description"])


def edit(client: Any, job_id: int, text: str) -> None:
    client.post(f"jobs/{job_id}/update", properties=json.dumps({"description": text}))


@pytest.fixture
def pair(emulator: Callable[..., Any]) -> Any:
    cluster = make_cluster(emulator, "Parent", "Ohio")
    yield cluster, Servers(emulator, cluster)
    cluster.close()


def _ok(result: Any) -> None:
    assert result.status == 0, [c.error for c in result.children]


@pytest.mark.parametrize("how", ["offline", "in_place"])
def test_an_edit_after_a_restore_meets_the_lost_versions_as_a_conflict(
    pair: Any, tmp_path: Path, how: str
) -> None:
    """Failure 1: the restored child reuses its counters ({Ohio:2} after the restore
    meets {Ohio:3} from before it); the edit must not be dropped as "older"."""
    cluster, servers = pair
    ohio, parent = cluster.client("Ohio"), cluster.client("Parent")
    create_job(ohio, "Survey roads")
    _ok(sync(cluster))
    job = job_id_by_name(ohio, "Survey roads")  # moved into Ohio's block as it joined
    copy = backup(servers._running("Ohio").db_path, tmp_path / "ohio-backup.sqlite")
    edit(ohio, job, "lost edit one")
    edit(ohio, job, "lost edit two")
    _ok(sync(cluster))
    assert description(parent, job) == "lost edit two"

    servers.restore(how, "Ohio", copy)
    assert description(ohio, job) == ""  # the restore took the two edits away
    edit(ohio, job, "made after the restore")

    listener = Recorder()
    _ok(sync(cluster, listener))
    for name in cluster.names:
        assert description(cluster.client(name), job) == "made after the restore", name
    assert any("Ohio went back in time" in w for w in listener.warnings), listener.warnings
    logged = [
        c
        for c in parent.get("replication/conflicts")["conflicts"]
        if c["guid"] == parent.get(f"jobs/{job}")["guid"]
    ]
    assert any(c["loser"]["content"].get("description") == "lost edit two" for c in logged)
    assert_converged(cluster)
    # The pair is trusted again: a second run moves nothing and reports nothing back.
    listener = Recorder()
    again = sync(cluster, listener)
    _ok(again)
    assert not any("went back" in w for w in listener.warnings)
    assert [(c.sent, c.received, c.full_exchange) for c in again.children] == [(0, 0, False)]


@pytest.mark.parametrize("how", ["offline", "in_place"])
def test_a_restore_after_a_run_whose_pull_failed_is_found(
    pair: Any, tmp_path: Path, how: str
) -> None:
    """Failure 2: the run before the restore failed its pull but committed its push; the
    restored child's syncId still matched, and the runs reported 0 and moved nothing."""
    cluster, servers = pair
    ohio, parent = cluster.client("Ohio"), cluster.client("Parent")
    job = create_job(parent, "Bridge inspection")
    _ok(sync(cluster))
    copy = backup(servers._running("Ohio").db_path, tmp_path / "ohio-backup.sqlite")
    edit(parent, job, "parent edit")
    create_job(ohio, "Ohio's job")  # so that the pull has something to import
    faults = servers._running("Parent").app.faults
    faults.append(Fault("replication/import", "error"))  # every pull import fails
    failed = sync(cluster)
    faults.clear()
    assert failed.status == 1
    assert description(ohio, job) == "parent edit"  # the push committed

    servers.restore(how, "Ohio", copy)
    assert description(ohio, job) == ""

    _ok(sync(cluster))
    assert description(cluster.client("Ohio"), job) == "parent edit"
    assert_converged(cluster)


@pytest.mark.parametrize("setback", ["restore", "rebuild"])
def test_a_full_exchange_whose_push_failed_stays_full(
    pair: Any, tmp_path: Path, setback: str
) -> None:
    """Failure 3: after a full exchange whose push fails, the next run must not push
    with echo suppression: the restored or rebuilt child no longer holds what it sent."""
    cluster, servers = pair
    _ok(sync(cluster))
    copy = backup(servers._running("Ohio").db_path, tmp_path / "ohio-backup.sqlite")
    sent = create_job(cluster.client("Ohio"), "Sent by Ohio")
    _ok(sync(cluster))
    assert job_id_by_name(cluster.client("Parent"), "Sent by Ohio") == sent

    if setback == "restore":
        servers.restore_offline("Ohio", copy)
    else:
        servers.rebuild("Ohio")
    ohio = cluster.client("Ohio")
    assert sent not in ohio.get("jobs")["jobIds"]
    servers._running("Ohio").app.faults.append(Fault("replication/import", "error", times=1))
    assert sync(cluster).status == 1  # the pull committed, the push failed

    _ok(sync(cluster))
    assert job_id_by_name(cluster.client("Ohio"), "Sent by Ohio") == sent
    assert_converged(cluster)


@pytest.mark.parametrize("setback", ["restore", "rebuild"])
def test_job_ids_move_past_what_the_cluster_saw(pair: Any, tmp_path: Path, setback: str) -> None:
    """A job made on a restored or rebuilt child before its exchange completed takes an
    id past every id the cluster saw in its block (never one handed out twice)."""
    cluster, servers = pair
    _ok(sync(cluster))
    copy = backup(servers._running("Ohio").db_path, tmp_path / "ohio-backup.sqlite")
    sent = create_job(cluster.client("Ohio"), "Sent by Ohio")
    _ok(sync(cluster))
    if setback == "restore":
        servers.restore_offline("Ohio", copy)
    else:
        servers.rebuild("Ohio")
    servers._running("Ohio").app.faults.append(Fault("replication/import", "error", times=1))
    assert sync(cluster).status == 1  # detected and handled; the push failed

    made = create_job(cluster.client("Ohio"), "Made after the setback")
    assert made > sent
    _ok(sync(cluster))
    assert job_id_by_name(cluster.client("Parent"), "Made after the setback") == made
    assert job_id_by_name(cluster.client("Parent"), "Sent by Ohio") == sent
    assert_converged(cluster)


def test_a_restored_parent_is_found_and_its_edit_is_not_lost(pair: Any, tmp_path: Path) -> None:
    cluster, servers = pair
    parent = cluster.client("Parent")
    job = create_job(parent, "Parent's job")
    _ok(sync(cluster))
    copy = backup(servers._running("Parent").db_path, tmp_path / "parent-backup.sqlite")
    edit(parent, job, "lost parent edit one")
    edit(parent, job, "lost parent edit two")
    _ok(sync(cluster))
    servers.restore_offline("Parent", copy)
    parent = cluster.client("Parent")
    edit(parent, job, "parent edit after the restore")

    listener = Recorder()
    _ok(sync(cluster, listener))
    assert any("Parent went back in time" in w for w in listener.warnings), listener.warnings
    for name in cluster.names:
        assert description(cluster.client(name), job) == "parent edit after the restore"
    assert_converged(cluster)


@pytest.mark.parametrize("parent_setback", ["rebuild", "restore"])
def test_an_edit_on_a_child_restored_while_the_parent_went_back_is_not_lost(
    emulator: Callable[..., Any], tmp_path: Path, parent_setback: str
) -> None:
    # Both setbacks before one run: the signs of Utah's restore were in the parent's node
    # row of Utah, which went back with the parent. Ohio holds Utah's lost edits, whose
    # counters Utah's next edit reuses: without a new incarnation, that edit looked older
    # and was dropped with no conflict logged.
    cluster = make_cluster(emulator, "Parent", "Ohio", "Utah")
    servers = Servers(emulator, cluster)
    try:
        job = create_job(cluster.client("Parent"), "shared")
        _ok(sync(cluster))
        parent_copy = backup(cluster.parent.db_path, tmp_path / "parent.sqlite")
        utah_copy = backup(cluster.children[1].db_path, tmp_path / "utah.sqlite")
        edit(cluster.client("Utah"), job, "lost Utah edit one")
        edit(cluster.client("Utah"), job, "lost Utah edit two")
        _ok(sync(cluster))
        assert description(cluster.client("Ohio"), job) == "lost Utah edit two"

        servers.restore_offline("Utah", utah_copy)
        edit(cluster.client("Utah"), job, "Utah edit after the restore")
        if parent_setback == "rebuild":
            servers.rebuild("Parent")
        else:
            servers.restore_offline("Parent", parent_copy)
        listener = Recorder()
        _ok(sync(cluster, listener))

        assert any("cannot be ruled out" in w for w in listener.warnings), listener.warnings
        for name in cluster.names:
            assert description(cluster.client(name), job) == "Utah edit after the restore"
        losers = [
            c["loser"]["content"]["description"]
            for c in cluster.client("Parent").get("replication/conflicts")["conflicts"]
        ]
        assert "lost Utah edit two" in losers  # the edit the restore lost: logged
        assert_converged(cluster)
    finally:
        cluster.close()


def test_the_identity_is_in_replication_info(pair: Any) -> None:
    cluster, servers = pair
    _ok(sync(cluster))
    info: Dict[str, Any] = cluster.client("Ohio").replication_info()
    assert len(info["instanceId"]) == 32 and info["incarnation"] == "Ohio"
    row = next(n for n in info["nodes"] if n["name"] == "Parent")
    parent_info = cluster.client("Parent").replication_info()
    assert row["peerInstance"] == parent_info["instanceId"]
    assert row["syncSeq"] >= 1 and row["peerGenSeen"] is not None
    servers.rebuild("Ohio")
    assert cluster.client("Ohio").replication_info()["instanceId"] != info["instanceId"]
    assert os.path.exists(servers._running("Ohio").db_path)


def test_a_rebuilt_child_does_not_revert_edits_of_default_items(pair: Any) -> None:
    """A rebuilt repository starts with the default items again; its edits are re-stamped,
    its untouched defaults are not, so an edit made elsewhere still supersedes them."""
    cluster, servers = pair
    parent = cluster.client("Parent")
    parent.post("jobTypes/1/update", description="edited on the parent")
    _ok(sync(cluster))
    servers.rebuild("Ohio")
    listener = Recorder()
    _ok(sync(cluster, listener))
    assert any("Ohio went back in time" in w for w in listener.warnings), listener.warnings
    for name in cluster.names:
        detail = cluster.client(name).get("jobTypes/1")
        assert detail["description"] == "edited on the parent", name
        # Superseded, not a conflict: the rebuilt default was never edited.
        logged = cluster.client(name).get("replication/conflicts")["conflicts"]
        assert not [c for c in logged if c["kind"] == "JobType"], name
    assert_converged(cluster)
