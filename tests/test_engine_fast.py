"""The algorithm, fast: the engine against in-memory replicas (tests/memory_replica.py).

No HTTP and no SQLite: these pin watermarks, failure isolation, cancel, plan, names,
membership and the messages, in milliseconds. tests/test_engine_integration.py does
the same things against live emulators.
"""

from __future__ import annotations

import threading
from typing import List

import pytest
from memory_replica import MemoryCluster, url_of

from wmsync import SyncListener, plan, synchronize
from wmsync.report import status_meaning


class Recorder(SyncListener):
    def __init__(self) -> None:
        self.infos: List[str] = []
        self.warnings: List[str] = []
        self.steps: List[str] = []
        self.done = 0
        self.total = -1
        self.threads = set()

    def _seen(self) -> None:
        self.threads.add(threading.get_ident())

    def info(self, text: str) -> None:
        self._seen()
        self.infos.append(text)

    def warning(self, text: str) -> None:
        self._seen()
        self.warnings.append(text)

    def begin(self, total_steps: int, label: str) -> None:
        self._seen()
        self.total = total_steps

    def step(self, label: str) -> None:
        self._seen()
        self.steps.append(label)

    def step_done(self) -> None:
        self._seen()
        self.done += 1


@pytest.fixture
def mem() -> MemoryCluster:
    return MemoryCluster("Parent", "Ohio", "AZ")


def run(cluster: MemoryCluster, table: str = "", parent: str = "Parent", **options):
    return synchronize(
        url_of("Parent"),
        parent,
        table or cluster.table("Ohio", "AZ"),
        replica_factory=cluster,
        **options,
    )


def moved(result) -> int:
    return sum(child.sent + child.received for child in result.children)


def converged(cluster: MemoryCluster) -> bool:
    views = [repo.versions() for repo in cluster.repos.values()]
    return all(view == views[0] for view in views)


def test_edits_everywhere_converge_and_a_second_run_moves_nothing(mem):
    mem["Parent"].edit("hq")
    mem["Ohio"].edit("ohio")
    mem["AZ"].edit("az")
    result = run(mem)
    assert result.status == 0, result.summary_lines()
    assert converged(mem) and set(mem["AZ"].users()) == {"hq", "ohio", "az"}
    before = {name: repo.generation for name, repo in mem.repos.items()}
    again = run(mem)
    assert again.status == 0 and moved(again) == 0
    assert {name: repo.generation for name, repo in mem.repos.items()} == before
    assert mem.opened == mem.closed  # every replica the run opened was closed


def test_watermark_is_the_generation_the_export_covered_not_a_later_one(mem):
    run(mem)
    mem["Ohio"].edit("before")
    # An edit made on Ohio right after its export was read, while the run goes on.
    mem["Ohio"].hooks["export"] = lambda: (mem["Ohio"].hooks.clear(), mem["Ohio"].edit("during"))
    first = run(mem)
    assert first.children[0].sent == 1
    assert "during" not in mem["Parent"].users()
    second = run(mem)
    assert second.children[0].sent == 1  # the edit made during the run was not skipped
    assert converged(mem)


def test_no_echo_a_childs_change_is_not_sent_back_to_it(mem):
    run(mem)
    mem["Ohio"].edit("from Ohio")
    ohio, az = run(mem).children
    assert (ohio.sent, ohio.received, az.sent, az.received) == (1, 0, 0, 1)
    pushes = [call for call in mem["Parent"].ops("export") if call[2] == "Ohio"]
    assert pushes  # the push to Ohio left out what came via Ohio


def test_a_failed_push_fails_that_child_alone_and_is_redone_incrementally(mem):
    run(mem)
    mem["Parent"].edit("to push")
    mem["Ohio"].edit("pulled")
    mem["Ohio"].faults["import_document"] = 1
    listener = Recorder()
    failed = run(mem, listener=listener)
    assert failed.status == 1
    ohio, az = failed.children
    assert (ohio.state, az.state) == ("failed", "synchronized")
    assert ohio.error.startswith("while receiving the parent's changes: ")
    assert failed.last_sync_rows[0][3] == "''" or failed.last_sync_rows[0][3] == ""
    again = run(mem)
    assert again.status == 0
    assert not again.children[0].full_exchange
    assert (again.children[0].sent, again.children[0].received) == (0, 1)
    assert converged(mem)


def test_a_child_that_is_down_fails_alone_with_its_name_once(mem):
    mem.down.add("AZ")
    mem["Ohio"].edit("still travels")
    listener = Recorder()
    result = run(mem, listener=listener)
    assert result.status == 1
    assert [c.state for c in result.children] == ["synchronized", "failed"]
    line = [w for w in listener.warnings if "AZ" in w]
    assert len(line) == 1
    assert line[0].replace(url_of("AZ"), "<url>").count("AZ") == 1, line
    assert line[0].startswith("AZ: FAILED: while being checked: ")
    assert listener.total == listener.done == 2  # only Ohio's two steps
    assert "status 1: the connected child failed" not in result.summary_lines()[-1]
    assert result.summary_lines()[-1] == (
        "status 1: 1 of 2 connected children failed; the other one synchronized"
    )


def test_a_known_child_that_fails_its_check_is_not_said_to_be_registered(mem):
    run(mem)
    mem["AZ"].faults["update_node"] = 0
    mem["AZ"].faults["replication_info"] = 1
    result = run(mem)
    az = result.children[1]
    assert az.error.startswith("while being checked: ")
    fresh = MemoryCluster("Parent", "Ohio")
    fresh["Ohio"].faults["update_node"] = 1
    first = synchronize(url_of("Parent"), "Parent", fresh.table("Ohio"), replica_factory=fresh)
    assert first.children[0].error.startswith("while being registered: ")


@pytest.mark.parametrize(
    ("status", "connected", "words"),
    [
        (1, 1, "the connected child failed"),
        (2, 2, "all 2 connected children failed"),
        (1, 3, "1 of 3 connected children failed; the other 2 synchronized"),
        (0, 3, "every connected child synchronized"),
        (-1, 0, "nothing could be done"),
    ],
)
def test_status_words_never_speak_of_others_that_are_not_there(status, connected, words):
    assert status_meaning(status, connected) == words


def test_listener_is_called_only_on_the_calling_thread(mem):
    mem.down.add("AZ")
    mem["Ohio"].edit("x")
    listener = Recorder()
    run(mem, listener=listener, max_workers=4)
    assert listener.threads == {threading.get_ident()}
    assert listener.infos and listener.warnings


def test_cancel_stops_at_a_safe_point_and_the_next_run_finishes(mem):
    class CancelAfterFirstStep(Recorder):
        def cancelled(self) -> bool:
            return self.done >= 1

    run(mem)
    mem["Ohio"].edit("made before the cancel")
    mem["Parent"].edit("hq")
    result = run(mem, listener=CancelAfterFirstStep(), max_workers=1)
    assert result.cancelled and result.status > 0
    assert all(row[3] in ("", "''") for row in result.last_sync_rows)
    again = run(mem)
    assert again.status == 0 and not again.cancelled
    assert converged(mem)


def test_names_are_the_servers_own_spelling_everywhere(mem):
    table = mem.table("Ohio", "AZ", typed={"Ohio": "OHIO", "AZ": "az"})
    result = run(mem, table, parent="parent")
    assert result.status == 0, result.summary_lines()
    assert result.parent_name == "Parent"
    assert [c.name for c in result.children] == ["Ohio", "AZ"]
    assert [row[0] for row in result.last_sync_rows] == ["Ohio", "AZ"]
    assert sorted(mem["Parent"].nodes) == ["AZ", "Ohio", "Parent"]
    assert sorted(mem["Ohio"].nodes) == ["Ohio", "Parent"]
    vias = {call[2] for call in mem["Parent"].ops("export") + mem["Ohio"].ops("export")}
    assert vias <= {None, "Parent", "Ohio", "AZ"}
    mem["Ohio"].edit("x")
    again = run(mem, table, parent="PARENT")
    assert not again.children[0].full_exchange
    assert {s.via for s in mem["Parent"].elements.values()} <= {"", "Ohio", "AZ"}


def test_a_child_of_another_cluster_is_refused_naming_it_and_how_to_leave(mem):
    other = mem.add("Other")
    mem["Ohio"].update_node("Other", server_url=other.url, is_parent=True)
    before = {name: dict(repo.nodes) for name, repo in mem.repos.items()}
    result = run(mem)
    ohio, az = result.children
    assert (ohio.state, az.state) == ("failed", "synchronized")
    assert "Other" in ohio.error and "Clear Job Replication Information" in ohio.error
    assert "wmsync clear" in ohio.error
    assert mem["Ohio"].nodes == before["Ohio"]  # nothing written to Ohio
    assert "Ohio" not in mem["Parent"].nodes


def test_a_parent_that_is_a_child_elsewhere_or_swapped_roles_is_refused(mem):
    run(mem)  # Parent is the parent of Ohio and AZ
    # Ohio as a parent: it is a child in Parent's cluster.
    swapped = synchronize(url_of("Ohio"), "Ohio", mem.table("Parent"), replica_factory=mem)
    assert swapped.status == -1
    assert "child in the cluster of Parent" in swapped.error
    assert "Clear Job Replication Information" in swapped.error
    # Parent as a child of a new repository: it is the parent of its own cluster.
    mem.add("New")
    joined = synchronize(url_of("New"), "New", mem.table("Parent"), replica_factory=mem)
    assert joined.status == 1
    assert "parent of its own cluster" in joined.children[0].error
    assert "Parent" not in mem["New"].nodes or not mem["New"].nodes["Parent"]["jobIdStart"]


def test_plan_predicts_the_push_from_the_pulls_and_writes_nothing(mem):
    run(mem)
    for i in range(3):
        mem["Parent"].edit(f"hq {i}")
    mem["Ohio"].edit("ohio 0")
    mem["Ohio"].edit("ohio 1")
    mem["AZ"].edit("az 0")
    before = {name: (repo.generation, dict(repo.nodes)) for name, repo in mem.repos.items()}
    for repo in mem.repos.values():
        repo.calls.clear()
    planned = plan(url_of("Parent"), "parent", mem.table("Ohio", "AZ"), replica_factory=mem)
    assert planned.status == 0
    assert planned.parent_name == "Parent"
    entries = {e.name: e for e in planned.children}
    assert [e.state for e in planned.children] == ["planned", "planned"]
    assert (entries["Ohio"].pull, entries["AZ"].pull) == (2, 1)
    assert (entries["Ohio"].push_estimate, entries["AZ"].push_estimate) == (3 + 1, 3 + 2)
    assert {name: (repo.generation, dict(repo.nodes)) for name, repo in mem.repos.items()} == before
    assert all(not repo.ops("export") for repo in mem.repos.values())  # counts only
    result = run(mem)
    got = {c.name: (c.sent, c.received) for c in result.children}
    assert got == {"Ohio": (2, 4), "AZ": (1, 5)}  # what the plan said


def test_plan_of_a_full_exchange_counts_everything(mem):
    mem["Parent"].edit("hq")
    mem["Ohio"].edit("ohio")
    planned = plan(url_of("Parent"), "Parent", mem.table("Ohio"), replica_factory=mem)
    entry = planned.children[0]
    assert entry.full_exchange and entry.state == "planned"
    assert (entry.pull, entry.push_estimate) == (1, 2)
    lines = planned.summary_lines()
    assert lines[0] == "Ohio: full exchange; pull would send 1 element(s), push would send about 2"
    result = synchronize(url_of("Parent"), "Parent", mem.table("Ohio"), replica_factory=mem)
    assert result.children[0].received == 2


def test_plan_failures_name_the_child_once(mem):
    mem.down.add("AZ")
    planned = plan(url_of("Parent"), "Parent", mem.table("Ohio", "AZ"), replica_factory=mem)
    assert planned.status == 1
    line = next(line for line in planned.summary_lines() if line.startswith("AZ"))
    assert line.startswith("AZ: cannot plan: ")


def test_queued_listener_replays_calls_in_order_and_polls_cancel_only_on_relay():
    from wmsync.progress import QueuedListener

    class Stop(Recorder):
        asked = 0

        def cancelled(self) -> bool:
            self.asked += 1
            return True

    queued, target = QueuedListener(), Stop()
    worker = threading.Thread(
        target=lambda: (queued.step("a"), queued.warning("w"), queued.step_done(), queued.info("i"))
    )
    worker.start()
    worker.join()
    assert (target.steps, target.done) == ([], 0)  # nothing reaches it from the worker
    queued.replay(target)
    assert (target.steps, target.warnings, target.infos, target.done) == (["a"], ["w"], ["i"], 1)
    assert target.threads == {threading.get_ident()}
    assert target.asked == 0 and not queued.cancelled()
    queued.relay(target)
    assert target.asked == 1 and queued.cancelled()


def test_a_node_row_in_the_servers_spelling_wins_over_a_typed_one():
    from wmsync.membership import node_row

    info = {"nodes": [{"name": "ohio", "syncId": "old"}, {"name": "Ohio", "syncId": "new"}]}
    assert node_row(info, "Ohio")["syncId"] == "new"
    assert node_row({"nodes": info["nodes"][:1]}, "Ohio")["syncId"] == "old"
    assert node_row(info, "AZ") is None
