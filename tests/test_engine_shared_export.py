"""Shared exports and split documents (docs/performance.md, issue 16).

Children that ask the parent for the same window share one export: the parent exports
once, the client downloads and validates once, every child imports the same file. One
child's failure stays its own; the export's failure is every sharer's. Exports are split
into chunks of at most ``wmsync.feed.CHUNK_ELEMENTS`` elements, all covering the first
chunk's generation. The first tests use the in-memory replicas; the split tests run the
real emulators on loopback with a tiny cap.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from cluster import assert_converged, create_job, generation, make_cluster
from memory_replica import MemoryCluster, url_of

from wmsync import feed, synchronize
from wmsync.client import WMServerClient
from wmsync.repository.store import Store

# -- sharing, in memory -----------------------------------------------------------------


@pytest.fixture
def mem() -> MemoryCluster:
    return MemoryCluster("Parent", "Ohio", "AZ", "Texas")


def run(cluster: MemoryCluster, *names: str, **options: Any):
    table = cluster.table(*(names or ("Ohio", "AZ", "Texas")))
    return synchronize(url_of("Parent"), "Parent", table, replica_factory=cluster, **options)


def test_three_untrusted_children_share_one_export_of_the_parent(mem):
    for user in ("a", "b", "c"):
        mem["Parent"].edit(user)
    result = run(mem)
    assert result.status == 0, result.summary_lines()
    assert mem["Parent"].ops("export") == [("export", 0, None)]
    assert len(mem["Parent"].ops("download")) == 1
    for name in ("Ohio", "AZ", "Texas"):
        assert set(mem[name].users()) == {"a", "b", "c"}
        assert mem[name].ops("import_document")  # each child imported the shared file
    assert [c.received for c in result.children] == [3, 3, 3]
    assert mem.opened == mem.closed


def test_a_child_whose_import_fails_does_not_fail_the_others_sharing_the_export(mem):
    mem["Parent"].edit("shared")
    mem["AZ"].faults["import_document"] = 1
    result = run(mem)
    assert result.status == 1
    ohio, az, texas = result.children
    assert (ohio.state, az.state, texas.state) == ("synchronized", "failed", "synchronized")
    assert az.error.startswith("while receiving the parent's changes: ")
    assert len(mem["Parent"].ops("export")) == 1
    assert "shared" in mem["Ohio"].users() and "shared" in mem["Texas"].users()
    assert "shared" not in mem["AZ"].users()
    # AZ's watermark on the parent did not move: the next run sends it what it missed.
    again = run(mem)
    assert again.status == 0
    assert [c.received for c in again.children] == [0, 1, 0]
    assert "shared" in mem["AZ"].users()


def test_a_failed_shared_export_fails_every_child_sharing_it_and_is_redone(mem):
    run(mem)
    mem["Parent"].edit("late")
    mem["Parent"].faults["export"] = 1
    failed = run(mem)
    assert failed.status == 3
    assert all(
        c.error.startswith("while receiving the parent's changes: ") for c in failed.children
    )
    again = run(mem)
    assert again.status == 0 and [c.received for c in again.children] == [1, 1, 1]


def test_trusted_children_share_the_uncut_window_only_when_the_cut_leaves_nothing_out(mem):
    run(mem)
    mem["Parent"].edit("parent only")
    before = len(mem["Parent"].ops("export"))
    quiet = run(mem)
    assert quiet.status == 0 and [c.received for c in quiet.children] == [1, 1, 1]
    # One export for the three: nothing after their common watermark came via any of them.
    assert len(mem["Parent"].ops("export")) == before + 1
    assert mem["Parent"].ops("export")[-1][2] is None
    mem["Ohio"].edit("from Ohio")
    mark = len(mem["Parent"].ops("export"))
    result = run(mem)
    ohio, az, texas = result.children
    assert (ohio.sent, ohio.received, az.received, texas.received) == (1, 0, 1, 1)
    windows = sorted(str(call[2]) for call in mem["Parent"].ops("export")[mark:])
    assert windows == ["None", "Ohio"]  # Ohio's own (echo cut), one shared by the others


def test_a_quiet_cluster_push_asks_the_parent_for_no_export(mem):
    run(mem)
    run(mem)  # every pair trusted, with one watermark on the parent
    exports = len(mem["Parent"].ops("export"))
    quiet = run(mem)
    assert quiet.status == 0 and [c.received for c in quiet.children] == [0, 0, 0]
    # The uncut window was counted empty: the feed covers the count's generation, and
    # the parent writes no export for it.
    assert len(mem["Parent"].ops("count_window")) >= 1
    assert len(mem["Parent"].ops("export")) == exports
    generation = mem["Parent"].generation
    rows = mem["Parent"].nodes
    assert all(rows[name]["lastSyncGen"] == generation for name in ("Ohio", "AZ", "Texas"))
    # An edit after the count still goes in the next run.
    mem["Parent"].edit("after the quiet run")
    later = run(mem)
    assert later.status == 0 and [c.received for c in later.children] == [1, 1, 1]
    assert len(mem["Parent"].ops("export")) == exports + 1


def test_a_cancel_during_a_shared_push_leaves_every_sharer_safe(mem):
    from wmsync import SyncListener

    class CancelOnImport(SyncListener):
        def cancelled(self) -> bool:
            return bool(mem["Ohio"].ops("import_document"))

    mem["Parent"].edit("x")
    result = run(mem, listener=CancelOnImport(), max_workers=1)
    assert result.cancelled
    assert all(c.state in ("synchronized", "failed") for c in result.children)
    again = run(mem)
    assert again.status == 0
    assert all("x" in mem[name].users() for name in ("Ohio", "AZ", "Texas"))


# -- split exports, on the emulator -------------------------------------------------------


class Counting:
    """A replica factory over HTTP that records every export answer."""

    def __init__(self) -> None:
        self.exports: List[Dict[str, Any]] = []
        self.after_first_chunk: Any = None

    def __call__(self, url: str) -> WMServerClient:
        outer = self

        class Client(WMServerClient):
            def export(self, since_gen: int, exclude_via: Any = None, **split: Any) -> Any:
                info = super().export(since_gen, exclude_via, **split)
                outer.exports.append(
                    {
                        "url": url,
                        "since": since_gen,
                        "via": exclude_via,
                        "count": info.count,
                        "generation": info.generation,
                        "more": info.more,
                        **split,
                    }
                )
                if outer.after_first_chunk and info.more:
                    hook, outer.after_first_chunk = outer.after_first_chunk, None
                    hook()
                return info

        return Client(url, user="tester")


@pytest.fixture
def tiny_chunks(monkeypatch):
    monkeypatch.setattr(feed, "CHUNK_ELEMENTS", 4)
    return 4


def test_a_split_first_sync_converges_with_no_document_over_the_cap(emulator, tiny_chunks):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    try:
        parent = cluster.client("Parent")
        for n in range(9):
            create_job(parent, f"job {n}")
        start = generation(parent)
        factory = Counting()
        result = synchronize(parent.url, "Parent", cluster.table(), replica_factory=factory)
        assert result.status == 0, result.summary_lines()
        view = assert_converged(cluster)
        assert len(view["jobs"]) == 9
        pushes = [e for e in factory.exports if e["url"] == parent.url]
        assert len(pushes) > 2  # split, and shared: one series of chunks for both children
        assert all(e["count"] <= tiny_chunks for e in factory.exports)
        assert {e["generation"] for e in pushes} == {start}
        assert sum(e["count"] for e in pushes) == sum(c.received for c in result.children) / 2
        rows = {n["name"]: n for n in parent.replication_info()["nodes"]}
        assert rows["Ohio"]["lastSyncGen"] == rows["AZ"]["lastSyncGen"] == start
    finally:
        cluster.close()


def test_sharers_that_wait_for_a_worker_do_not_stall_the_split_export(emulator, tiny_chunks):
    # One worker for three children sharing more chunks than the look-ahead: the first
    # child must read every chunk while the others wait in the pool's queue.
    import threading

    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ", "Texas")
    try:
        parent = cluster.client("Parent")
        for n in range(13):
            create_job(parent, f"job {n}")
        results: List[Any] = []
        worker = threading.Thread(
            target=lambda: results.append(
                synchronize(parent.url, "Parent", cluster.table(), user="tester", max_workers=1)
            ),
            daemon=True,
        )
        worker.start()
        worker.join(180)
        assert not worker.is_alive(), "the run stalled"
        assert results[0].status == 0, results[0].summary_lines()
        assert len(assert_converged(cluster)["jobs"]) == 13
    finally:
        cluster.close()


def test_an_edit_made_between_chunks_goes_in_the_next_run(emulator, tiny_chunks):
    cluster = make_cluster(emulator, "Parent", "Ohio")
    try:
        parent = cluster.client("Parent")
        for n in range(9):
            create_job(parent, f"job {n}")
        factory = Counting()
        factory.after_first_chunk = lambda: create_job(parent, "during")
        first = synchronize(parent.url, "Parent", cluster.table(), replica_factory=factory)
        assert first.status == 0
        names = {
            cluster.client("Ohio").get(f"jobs/{j}")["name"]
            for j in cluster.client("Ohio").get("jobs")["jobIds"]
        }
        assert "during" not in names and len(names) == 9
        second = synchronize(parent.url, "Parent", cluster.table(), user="tester")
        assert second.status == 0 and second.children[0].received >= 1  # the job, its activity
        assert_converged(cluster)
        assert_converged(cluster)
    finally:
        cluster.close()


def test_a_quiet_run_writes_no_export_on_the_parent_and_moves_its_watermarks(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    try:
        parent = cluster.client("Parent")
        create_job(parent, "before")
        for _ in range(2):  # registered, then every pair trusted on one watermark
            assert synchronize(parent.url, "Parent", cluster.table(), user="tester").status == 0
        factory = Counting()
        quiet = synchronize(parent.url, "Parent", cluster.table(), replica_factory=factory)
        assert quiet.status == 0, quiet.summary_lines()
        assert [e for e in factory.exports if e["url"] == parent.url] == []
        rows = {n["name"]: n for n in parent.replication_info()["nodes"]}
        assert rows["Ohio"]["lastSyncGen"] == rows["AZ"]["lastSyncGen"] == generation(parent)
        create_job(parent, "after")
        later = synchronize(parent.url, "Parent", cluster.table(), user="tester")
        assert later.status == 0 and all(c.received >= 1 for c in later.children)
        assert len(assert_converged(cluster)["jobs"]) == 2
    finally:
        cluster.close()


def test_store_chunks_cover_every_element_once_in_document_order(tmp_path):
    store = Store(tmp_path / "a.sqlite", "A")
    store.bulk_insert_jobs(25)
    whole = store.export(tmp_path / "whole")
    from wmsync import exchange

    with exchange.read_document(whole.path) as reader:
        expected = [e.guid for e in reader]
    seen: List[str] = []
    after, chunks = None, 0
    while True:
        info = store.export(
            tmp_path / "parts", max_count=7, until_gen=whole.generation, after=after
        )
        chunks += 1
        assert info.generation == whole.generation and info.count <= 7
        with exchange.read_document(info.path) as reader:
            seen += [e.guid for e in reader]
        if not info.more:
            break
        after = info.after
    assert seen == expected and chunks == -(-len(expected) // 7)
    with pytest.raises(ValueError):
        store.export(tmp_path / "bad", max_count=7, after="not a cursor")


def test_the_emulator_refuses_a_bad_split_request_by_name(emulator):
    server = emulator("Parent")
    client = WMServerClient(server.url, user="tester")
    try:
        for params, name in (({"maxCount": 0}, "maxCount"), ({"after": "x"}, "after")):
            with pytest.raises(Exception) as refused:
                client.get("replication/export", sinceGen=0, **params)
            assert name in str(refused.value)
    finally:
        client.close()


def test_the_next_chunk_is_exported_while_this_one_is_downloaded(
    emulator, tiny_chunks, monkeypatch
):
    """The producer asks for chunk 2's export as soon as chunk 1's is answered, so the
    source exports while the client downloads and validates; the first chunk is small,
    so that the imports start early."""
    import threading

    monkeypatch.setattr(feed, "FIRST_CHUNK_ELEMENTS", 2)
    cluster = make_cluster(emulator, "Parent", "Ohio")
    try:
        parent = cluster.client("Parent")
        for n in range(9):
            create_job(parent, f"job {n}")
        asked_next = threading.Event()
        waited: List[bool] = []
        sizes: List[Any] = []

        def factory(url: str) -> WMServerClient:
            class Client(WMServerClient):
                def export(self, since_gen: int, exclude_via: Any = None, **split: Any) -> Any:
                    info = super().export(since_gen, exclude_via, **split)
                    if url == parent.url:
                        sizes.append(split.get("max_count"))
                        if split.get("after"):
                            asked_next.set()
                    return info

                def download(self, jxl_url: str, dest: Any) -> int:
                    if url == parent.url and not waited:
                        waited.append(asked_next.wait(20))  # chunk 1, before it is read
                    return super().download(jxl_url, dest)

            return Client(url, user="tester")

        result = synchronize(parent.url, "Parent", cluster.table(), replica_factory=factory)
        assert result.status == 0, result.summary_lines()
        assert waited == [True]
        assert sizes[0] == 2 and set(sizes[1:]) == {tiny_chunks}
        assert len(assert_converged(cluster)["jobs"]) == 9
    finally:
        cluster.close()
