"""The sending side's sequence bump goes with its export (``syncSeq``, docs/protocol.md;
docs/performance.md, sixth round): the emulator's answer, the client's reading of it,
and runs that ask no node update before their imports, or one per pair from a server
that does not know the parameter.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

import pytest
import requests

from tests.cluster import assert_converged, create_job, make_cluster
from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.errors import ProtocolError

USER = "tester"
OURS = "http://ours.test/arcgis/rest/services/Parent/WMServer"


def export(server: Any, **params: Any) -> Dict[str, Any]:
    answer = requests.get(
        server.url + "/replication/export",
        params={"user": USER, "f": "json", **params},
        timeout=30,
    )
    return dict(answer.json())


def sync_seq(server: Any, row: str) -> Optional[int]:
    node = server.store.node(row)
    return None if node is None else node.sync_seq


def test_the_export_bumps_the_rows_it_names_once_it_holds_something(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    try:
        parent = cluster.parent
        assert synchronize(parent.url, "Parent", cluster.table(), user=USER).status == 0
        start = {row: sync_seq(parent, row) or 0 for row in ("Ohio", "AZ")}
        create_job(cluster.client("Parent"), "new")
        generation = export(parent, sinceGen="0", countOnly="true")["generation"]

        marks = {"Ohio": start["Ohio"] + 5, "Nowhere": 3}
        answer = export(parent, sinceGen=str(generation - 1), syncSeq=json.dumps(marks))
        assert answer["count"] > 0
        assert answer["syncSeqMarked"] == ["Ohio"]  # a row it does not hold is not made
        assert sync_seq(parent, "Ohio") == start["Ohio"] + 5
        assert sync_seq(parent, "AZ") == start["AZ"]
        assert parent.store.node("Nowhere") is None

        lower = {"Ohio": start["Ohio"] + 1}  # only forward
        assert export(parent, sinceGen="0", syncSeq=json.dumps(lower))["syncSeqMarked"] == ["Ohio"]
        assert sync_seq(parent, "Ohio") == start["Ohio"] + 5

        # Nothing to import: nothing bumped (a quiet pull writes no node row).
        empty = export(parent, sinceGen=str(generation), syncSeq=json.dumps({"AZ": 99}))
        assert empty["count"] == 0 and empty["syncSeqMarked"] == []
        assert sync_seq(parent, "AZ") == start["AZ"]

        assert "syncSeqMarked" not in export(parent, sinceGen="0")
        for bad in ("Ohio", "[1]", '{"Ohio": 0}', '{"Ohio": -2}', '{"Ohio": "3"}', '{"": 1}'):
            refused = export(parent, sinceGen="0", syncSeq=bad)
            assert refused["error"]["code"] == 400, bad
            assert "syncSeq" in json.dumps(refused["error"]), bad
        assert sync_seq(parent, "Ohio") == start["Ohio"] + 5  # a refusal changed nothing
    finally:
        cluster.close()


def answering(monkeypatch: pytest.MonkeyPatch, answer: Dict[str, Any]) -> List[Dict[str, Any]]:
    asked: List[Dict[str, Any]] = []

    def _json(self: Any, method: str, path: str, **options: Any) -> Dict[str, Any]:
        asked.append({"path": path, **(options.get("params") or {})})
        return answer

    monkeypatch.setattr(WMServerClient, "_json", _json)
    return asked


EXPORTED = {"jxlURL": "replication/exports/a.jxl", "generation": 9, "exportTime": 1, "count": 2}


def test_the_client_sends_the_marks_and_reads_the_rows_bumped(monkeypatch):
    asked = answering(monkeypatch, {**EXPORTED, "syncSeqMarked": ["Ohio"]})
    client = WMServerClient(OURS, user=USER)
    try:
        info = client.export(4, "Ohio", sync_seqs={"Ohio": 7, "AZ": 2})
        assert info.sync_seq_marked == ("Ohio",)
        assert json.loads(asked[0]["syncSeq"]) == {"Ohio": 7, "AZ": 2}
        assert client.export(4).sync_seq_marked == ("Ohio",)
        assert asked[1]["syncSeq"] is None  # left out of the query
    finally:
        client.close()


def test_a_server_that_does_not_know_the_marks_says_nothing_of_them(monkeypatch):
    answering(monkeypatch, dict(EXPORTED))
    client = WMServerClient(OURS, user=USER)
    try:
        assert client.export(4, sync_seqs={"Ohio": 7}).sync_seq_marked is None
    finally:
        client.close()


@pytest.mark.parametrize("marked", ["Ohio", [3], {"Ohio": 1}])
def test_a_malformed_answer_of_the_marks_is_refused_by_name(monkeypatch, marked):
    answering(monkeypatch, {**EXPORTED, "syncSeqMarked": marked})
    client = WMServerClient(OURS, user=USER)
    try:
        with pytest.raises(ProtocolError, match="syncSeqMarked"):
            client.export(4, sync_seqs={"Ohio": 7})
    finally:
        client.close()


class Recorder:
    """A replica factory over HTTP that records node updates (server, row, fields) and
    the sequence number each import carried (server, peer, number); with
    *ignore_marks*, each server acts as one from before ``syncSeq``."""

    def __init__(self, names: Dict[str, str], ignore_marks: bool = False) -> None:
        self.names = names
        self.updates: List[Tuple[str, str, Dict[str, Any]]] = []
        self.imports: List[Tuple[str, Optional[str], Optional[int]]] = []
        self.ignore_marks = ignore_marks

    def __call__(self, url: str) -> WMServerClient:
        outer, server = self, self.names[url]

        class Client(WMServerClient):
            def update_node(self, name: str, **fields: Any) -> Any:
                outer.updates.append((server, name, fields))
                return super().update_node(name, **fields)

            def import_document(self, path: str, merge: bool = True, **options: Any) -> Any:
                outer.imports.append((server, options.get("peer"), options.get("peer_seq")))
                return super().import_document(path, merge, **options)

            def export(self, since_gen: int, exclude_via: Any = None, **options: Any) -> Any:
                if outer.ignore_marks:
                    options.pop("sync_seqs", None)
                return super().export(since_gen, exclude_via, **options)

        return Client(url, user=USER)

    def bumps(self) -> List[Tuple[str, str]]:
        """The node updates that only bumped a sequence number (server, row)."""
        return [(s, row) for s, row, f in self.updates if set(f) == {"sync_seq"}]


@pytest.mark.parametrize("ignore_marks", [False, True], ids=["marks", "old server"])
def test_a_run_bumps_each_sender_with_its_export(emulator, ignore_marks):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ", "Utah")
    try:
        table = cluster.table()
        for _ in range(2):  # registered, then trusted
            assert synchronize(cluster.parent.url, "Parent", table, user=USER).status == 0
        create_job(cluster.client("Parent"), "for every child")
        create_job(cluster.client("Ohio"), "from Ohio")
        servers = [cluster.parent, *cluster.children]
        children = [cluster.name_of(s) for s in cluster.children]
        before = {n: sync_seq(cluster.parent, n) or 0 for n in children}
        recorder = Recorder({s.url: cluster.name_of(s) for s in servers}, ignore_marks)
        done = synchronize(cluster.parent.url, "Parent", table, user=USER, replica_factory=recorder)
        assert done.status == 0
        if ignore_marks:  # one node update per direction that moved something
            assert sorted(recorder.bumps()) == [
                ("Ohio", "Parent"),
                ("Parent", "AZ"),
                ("Parent", "Ohio"),
                ("Parent", "Utah"),
            ]
        else:
            assert recorder.bumps() == []
        # Every import still carried a number its sender took for it (past the pair's
        # number before the run); the renewal after the last one moved both rows one
        # further, and the receiver recorded it.
        carried: Dict[str, List[int]] = {n: [] for n in children}
        for server, peer, number in recorder.imports:
            assert peer is not None and number is not None
            child = server if peer == "Parent" else peer
            assert number > before[child], (server, peer)
            carried[child].append(number)
        assert sorted(len(c) for c in carried.values()) == [1, 1, 2]  # Ohio both ways
        child_servers = dict(zip(children, cluster.children))
        for child, numbers in carried.items():
            assert numbers == sorted(set(numbers))
            assert sync_seq(cluster.parent, child) == numbers[-1] + 1
            assert sync_seq(child_servers[child], "Parent") == numbers[-1] + 1
            assert child_servers[child].store.node("Parent").peer_seq == numbers[-1] + 1
        assert_converged(cluster)
    finally:
        cluster.close()
