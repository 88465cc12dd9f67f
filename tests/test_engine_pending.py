"""A child's replication/info counts what waits for its parent (``pending``), so a pull
with nothing to send asks for no export (docs/protocol.md, docs/performance.md). Against
emulators on loopback, and the rule that decides when the count may stand in for the
pull's own.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import pytest

from tests.cluster import assert_converged, create_job, generation, holdings
from tests.test_engine_quiet_pull import rows, sync, trusted_cluster, urls
from wmsync.client import WMServerClient
from wmsync.pairrules import nothing_waiting
from wmsync.replica import default_replica_factory

USER = "tester"


class Recorder:
    """The product's replica factory, recording each request its replicas make after it
    returned them (server, operation): the factory's own kind read is not among them;
    *after_first_read* runs once, right after the factory made its first replica of the
    server it names (whose info read is then held for the engine's first read)."""

    def __init__(
        self,
        names: Dict[str, str],
        after_first_read: Optional[Dict[str, Callable[[], None]]] = None,
    ) -> None:
        self.names = names
        self.calls: List[tuple[str, str]] = []
        self.after = dict(after_first_read or {})
        self.inner = default_replica_factory(user=USER)

    def __call__(self, url: str) -> Any:
        replica = self.inner(url)
        server = self.names[url]
        real_send = replica._send

        def send(request: Any, token: Any, consume: Any) -> Any:
            self.calls.append((server, request.url.split("/WMServer/")[-1]))
            return real_send(request, token, consume)

        replica._send = send
        hook = self.after.pop(server, None)
        if hook is not None:
            hook()
        return replica

    def on(self, server: str, operation: str) -> int:
        return sum(1 for s, op in self.calls if s == server and op == operation)


def test_info_counts_what_an_export_of_the_pulls_window_would_hold(emulator):
    cluster = trusted_cluster(emulator)
    try:
        ohio = cluster.client("Ohio")

        def pending_and_export_count() -> tuple[int, int]:
            info = ohio.replication_info()
            row = next(n for n in info["nodes"] if n["name"] == "Parent")
            return row["pending"], ohio.count_changes(row["lastSyncGen"], "Parent")

        # The push moved the child's generation past its watermark; those came via the
        # parent, so nothing waits for it.
        assert generation(ohio) > rows(ohio)["Parent"]["lastSyncGen"]
        assert pending_and_export_count() == (0, 0)
        create_job(ohio, "made on Ohio")
        waiting, counted = pending_and_export_count()
        assert waiting == counted > 0
        info = ohio.replication_info()
        others = [n for n in info["nodes"] if n["name"] != "Parent"]
        assert others and all("pending" not in n for n in others)  # its own row, not a parent
        parent_info = cluster.client("Parent").replication_info()
        assert all("pending" not in n for n in parent_info["nodes"])  # children's rows
    finally:
        cluster.close()


def test_a_child_with_nothing_to_send_is_asked_for_no_export(emulator):
    cluster = trusted_cluster(emulator)
    try:
        create_job(cluster.client("Parent"), "made on the parent")
        recorder = Recorder(urls(cluster))
        result = sync(cluster, replica_factory=recorder)
        assert result.status == 0, result.summary_lines()
        assert [(c.sent, c.received > 0) for c in result.children] == [(0, True), (0, True)]
        for name in ("Ohio", "AZ"):
            assert recorder.on(name, "replication/export") == 0, recorder.calls
        assert_converged(cluster)
        create_job(cluster.client("AZ"), "made on AZ")  # then it has something: asked
        recorder = Recorder(urls(cluster))
        later = sync(cluster, replica_factory=recorder)
        assert later.status == 0 and [c.sent > 0 for c in later.children] == [False, True]
        assert recorder.on("AZ", "replication/export") >= 1
        assert recorder.on("Ohio", "replication/export") == 0
        assert "made on AZ" in str(holdings(cluster.client("Parent")))
    finally:
        cluster.close()


def test_an_edit_made_after_the_count_is_sent_by_the_next_run(emulator):
    """The count holds for the info's snapshot: the pull's watermark moves to that
    generation, never past an edit made after it."""
    cluster = trusted_cluster(emulator)
    try:

        def edit_ohio() -> None:  # a user's edit between the read and the pull
            with WMServerClient(cluster.children[0].url, user=USER) as ohio:
                create_job(ohio, "made after the count")

        recorder = Recorder(urls(cluster), after_first_read={"Ohio": edit_ohio})
        first = sync(cluster, replica_factory=recorder)
        assert first.status == 0, first.summary_lines()
        assert recorder.on("Ohio", "replication/export") == 0  # the held read said 0
        assert "made after the count" not in str(holdings(cluster.client("Parent")))
        ohio = cluster.client("Ohio")
        assert rows(ohio)["Parent"]["lastSyncGen"] < generation(ohio)
        second = sync(cluster)
        assert second.status == 0 and second.children[0].sent > 0
        assert "made after the count" in str(holdings(cluster.client("Parent")))
        assert_converged(cluster)
    finally:
        cluster.close()


INFO = {"generation": 12, "nodes": []}


@pytest.mark.parametrize(
    "row, mark, expected",
    [
        ({"name": "Parent", "pending": 0, "lastSyncGen": 9}, 9, 12),
        ({"name": "Parent", "pending": 3, "lastSyncGen": 9}, 9, None),  # something waits
        ({"name": "Parent", "lastSyncGen": 9}, 9, None),  # a server that does not count
        ({"name": "Parent", "pending": False, "lastSyncGen": 9}, 9, None),  # not a count
        ({"name": "Parent", "pending": "0", "lastSyncGen": 9}, 9, None),
        ({"name": "PARENT", "pending": 0, "lastSyncGen": 9}, 9, None),  # cut by another name
        ({"name": "Parent", "pending": 0, "lastSyncGen": 8}, 9, None),  # another window
        ({"name": "Parent", "pending": 0, "lastSyncGen": None}, 0, 12),
        (None, 0, None),
    ],
)
def test_the_count_stands_for_the_pulls_only_in_its_own_window(row, mark, expected):
    assert nothing_waiting(INFO, row, "Parent", mark) == expected
