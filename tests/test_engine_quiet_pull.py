"""A pull that moved nothing writes no node rows of its own (docs/performance.md, fifth
round): the child's watermark goes with the push's renewal, so a quiet pair costs one
node write on each side instead of two. Against emulators on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from tests.cluster import Cluster, assert_converged, create_job, generation, make_cluster
from tests.test_reliability_restore import Recorder, Servers, backup, description, edit
from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.errors import ConnectionFailed

USER = "tester"


class NodeWrites:
    """A replica factory over HTTP that records every node-row update: (server, row);
    with *cut_at_renewal*, the push's renewal on the parent fails (a connection lost
    there), as a run cut after a quiet pull."""

    def __init__(self, names: Dict[str, str], cut_at_renewal: bool = False) -> None:
        self.names = names  # url -> repository name
        self.writes: List[Tuple[str, str]] = []
        self.cut_at_renewal = cut_at_renewal

    def __call__(self, url: str) -> WMServerClient:
        outer, server = self, self.names[url]

        class Client(WMServerClient):
            def update_node(self, name: str, **fields: Any) -> Any:
                if outer.cut_at_renewal and server == "Parent" and fields.get("stamp_last_sync"):
                    raise ConnectionFailed("connection lost (test)")
                answer = super().update_node(name, **fields)
                outer.writes.append((server, name))
                return answer

        return Client(url, user=USER)


def urls(cluster: Cluster) -> Dict[str, str]:
    return {s.url: Cluster.name_of(s) for s in [cluster.parent, *cluster.children]}


def sync(cluster: Cluster, **options: Any) -> Any:
    return synchronize(
        cluster.parent.url, cluster.parent_name, cluster.table(), user=USER, **options
    )


def rows(client: WMServerClient) -> Dict[str, Dict[str, Any]]:
    return {n["name"]: n for n in client.replication_info()["nodes"]}


def trusted_cluster(emulator: Callable[..., Any]) -> Cluster:
    """Parent, Ohio and AZ, in step, after a run whose push moved a job to both children
    (so each child's generation is past its pull's watermark)."""
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    parent = cluster.client("Parent")
    create_job(parent, "first")
    for _ in range(2):  # registered, then trusted
        assert sync(cluster).status == 0
    create_job(parent, "second")
    received = sync(cluster)
    assert received.status == 0 and all(c.received > 0 for c in received.children)
    return cluster


def test_a_quiet_pull_writes_no_node_rows_and_its_watermark_still_moves(emulator):
    cluster = trusted_cluster(emulator)
    try:
        parent = cluster.client("Parent")
        before = {name: rows(cluster.client(name))["Parent"] for name in ("Ohio", "AZ")}
        for name in ("Ohio", "AZ"):  # the push moved each child past its watermark
            assert generation(cluster.client(name)) > before[name]["lastSyncGen"]
        writes = NodeWrites(urls(cluster))
        quiet = sync(cluster, replica_factory=writes)
        assert quiet.status == 0, quiet.summary_lines()
        assert sorted(writes.writes) == [
            ("AZ", "Parent"),
            ("Ohio", "Parent"),
            ("Parent", "AZ"),
            ("Parent", "Ohio"),
        ]
        parent_rows = rows(parent)
        for name in ("Ohio", "AZ"):
            child = cluster.client(name)
            row = rows(child)["Parent"]
            assert row["lastSyncGen"] == generation(child), name  # moved with the push
            assert row["syncId"] == parent_rows[name]["syncId"] != before[name]["syncId"]
        assert all(c.last_sync is not None for c in quiet.children)
        create_job(cluster.client("Ohio"), "made on Ohio")
        later = sync(cluster)
        assert later.status == 0 and [c.sent > 0 for c in later.children] == [True, False]
        assert assert_converged(cluster)["jobs"]
    finally:
        cluster.close()


def test_a_run_cut_after_a_quiet_pull_keeps_the_old_watermark_and_syncids(emulator):
    cluster = trusted_cluster(emulator)
    try:
        parent = cluster.client("Parent")
        before_child = rows(cluster.client("Ohio"))["Parent"]
        before_parent = rows(parent)["Ohio"]
        writes = NodeWrites(urls(cluster), cut_at_renewal=True)
        cut = sync(cluster, replica_factory=writes)
        assert cut.status != 0 and [c.error is not None for c in cut.children] == [True, True]
        assert writes.writes == []  # nothing written on either side
        after_child = rows(cluster.client("Ohio"))["Parent"]
        after_parent = rows(parent)["Ohio"]
        assert after_child["lastSyncGen"] == before_child["lastSyncGen"]
        assert after_child["syncId"] == before_child["syncId"] == after_parent["syncId"]
        assert after_parent["lastSyncGen"] == before_parent["lastSyncGen"]

        create_job(cluster.client("Ohio"), "made after the cut run")
        again = sync(cluster)
        assert again.status == 0, again.summary_lines()
        moved = [(c.sent > 0, c.full_exchange) for c in again.children]
        assert moved == [(True, False), (False, False)]
        assert_converged(cluster)
    finally:
        cluster.close()


def test_a_child_restored_to_before_a_quiet_run_is_found(emulator, tmp_path: Path):
    """The backup holds the watermark and syncId from before the quiet run; the parent's
    row has the push's new syncId, so the restore is found and the edit made after it
    is not lost."""
    cluster = trusted_cluster(emulator)
    servers = Servers(emulator, cluster)
    try:
        ohio = cluster.client("Ohio")
        job = create_job(ohio, "Survey roads")
        assert sync(cluster).status == 0
        copy = backup(servers._running("Ohio").db_path, tmp_path / "ohio.sqlite")
        edit(ohio, job, "lost edit")
        assert sync(cluster).status == 0  # Ohio's edit goes up
        quiet = sync(cluster)  # Ohio's pull moves nothing
        assert quiet.status == 0 and [c.sent for c in quiet.children] == [0, 0]

        servers.restore("in_place", "Ohio", copy)
        edit(cluster.client("Ohio"), job, "made after the restore")
        listener = Recorder()
        found = sync(cluster, listener=listener)
        assert found.status == 0, found.summary_lines()
        assert any("Ohio went back in time" in w for w in listener.warnings), listener.warnings
        for name in cluster.names:
            assert description(cluster.client(name), job) == "made after the restore", name
        assert_converged(cluster)
    finally:
        cluster.close()
