"""The parent counts every sharer's cut window in one request (``excludeEachVia``,
docs/protocol.md; docs/performance.md, fifth round): the emulator's answer, the client's
reading of it, and the push that asks one count where it asked one per child.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cluster import Cluster, assert_converged, create_job, make_cluster
from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.errors import ProtocolError
from wmsync.repository.store import Store

USER = "tester"
OURS = "http://ours.test/arcgis/rest/services/Parent/WMServer"


def count(server: Any, **params: Any) -> Dict[str, Any]:
    answer = requests.get(
        server.url + "/replication/export",
        params={"user": USER, "f": "json", "countOnly": "true", **params},
        timeout=30,
    )
    return dict(answer.json())


@given(
    vias=st.lists(st.sampled_from(["Ohio", "AZ", "Texas", ""]), min_size=0, max_size=12),
    since=st.integers(min_value=0, max_value=14),
)
@settings(max_examples=40, deadline=None)
def test_each_cut_count_is_what_a_count_excluding_that_name_gives(tmp_path_factory, vias, since):
    """Against the store's own selection, in one snapshot: a version that came through a
    name, through another, or made on the repository itself (via "")."""
    store = Store(tmp_path_factory.mktemp("s") / "p.sqlite", "Parent")
    store.bulk_insert_jobs(len(vias))
    with store.atomic() as session:
        rows = session.conn.execute("SELECT guid FROM elements ORDER BY gen").fetchall()
        for (guid,), via in zip(rows, vias):
            session.conn.execute("UPDATE elements SET via = ? WHERE guid = ?", (via, guid))
    with store.reading() as session:
        by_via = session.counts_by_via(since)
        for name in ("Ohio", "AZ", "Texas", "Utah"):
            expected = sum(1 for _ in session.elements_since(since, name))
            got = sum(n for via, n in by_via.items() if via != name)
            assert got == expected, (name, by_via)
        assert sum(by_via.values()) == sum(1 for _ in session.elements_since(since))


def test_the_emulator_answers_each_cut_count_beside_the_uncut_one(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    try:
        create_job(cluster.client("Ohio"), "from Ohio")
        create_job(cluster.client("Parent"), "from the parent")
        assert synchronize(cluster.parent.url, "Parent", cluster.table(), user=USER).status == 0
        parent = cluster.parent
        names = ["Ohio", "AZ", "Nowhere"]
        answer = count(parent, sinceGen="0", excludeEachVia=json.dumps(names))
        for name in names:
            alone = count(parent, sinceGen="0", excludeVia=name)
            assert answer["excludingEach"][name] == alone["count"], name
            assert alone["generation"] == answer["generation"]
        assert answer["excludingEach"]["Ohio"] < answer["count"]  # Ohio's job is cut
        assert answer["excludingEach"]["Nowhere"] == answer["count"]
        assert "excludingEach" not in count(parent, sinceGen="0")
        for bad in ("Ohio", "[1]", '[""]', "{}"):
            refused = count(parent, excludeEachVia=bad)
            assert refused["error"]["code"] == 400, bad
            assert "excludeEachVia" in json.dumps(refused["error"]), bad
    finally:
        cluster.close()


def answering(monkeypatch: pytest.MonkeyPatch, answer: Dict[str, Any]) -> List[Dict[str, Any]]:
    asked: List[Dict[str, Any]] = []

    def get(self: Any, path: str, **params: Any) -> Dict[str, Any]:
        asked.append({"path": path, **params})
        return answer

    monkeypatch.setattr(WMServerClient, "get", get)
    return asked


def test_the_client_reads_each_cut_count_by_name(monkeypatch):
    asked = answering(
        monkeypatch, {"count": 5, "generation": 9, "excludingEach": {"Ohio": 3, "AZ": 5}}
    )
    client = WMServerClient(OURS, user=USER)
    try:
        assert client.count_excluding_each(4, ["Ohio", "AZ"]) == (5, 9, {"Ohio": 3, "AZ": 5})
    finally:
        client.close()
    assert asked == [
        {
            "path": "replication/export",
            "sinceGen": 4,
            "countOnly": "true",
            "excludeEachVia": '["Ohio", "AZ"]',
        }
    ]


def test_a_server_that_does_not_know_the_parameter_gives_the_uncut_count_only(monkeypatch):
    answering(monkeypatch, {"count": 5, "generation": 9})
    client = WMServerClient(OURS, user=USER)
    try:
        assert client.count_excluding_each(4, ["Ohio"]) == (5, 9, None)
    finally:
        client.close()


@pytest.mark.parametrize(
    "each, blamed",
    [([3], "not an object"), ({"AZ": 3}, "integer Ohio"), ({"Ohio": "3"}, "integer Ohio")],
)
def test_a_malformed_cut_count_is_refused_by_name(monkeypatch, each, blamed):
    answering(monkeypatch, {"count": 5, "generation": 9, "excludingEach": each})
    client = WMServerClient(OURS, user=USER)
    try:
        with pytest.raises(ProtocolError, match=blamed):
            client.count_excluding_each(4, ["Ohio"])
    finally:
        client.close()


class CountRequests:
    """A replica factory over HTTP that records every count the run asks a server."""

    def __init__(self, answer_each: bool = True) -> None:
        self.counts: List[Dict[str, Any]] = []
        self.exports: List[str] = []
        self.answer_each = answer_each

    def __call__(self, url: str) -> WMServerClient:
        outer = self

        class Client(WMServerClient):
            def get(self, path: str, **params: Any) -> Dict[str, Any]:
                if params.get("countOnly") == "true":
                    outer.counts.append({"url": url, **params})
                    if not outer.answer_each:  # a server from before excludeEachVia
                        params.pop("excludeEachVia", None)
                answer: Dict[str, Any] = super().get(path, **params)
                return answer

            def export(self, since_gen: int, exclude_via: Any = None, **split: Any) -> Any:
                outer.exports.append(url)
                return super().export(since_gen, exclude_via, **split)

        return Client(url, user=USER)


def run(cluster: Cluster, factory: Optional[CountRequests] = None) -> Any:
    return synchronize(
        cluster.parent.url, "Parent", cluster.table(), user=USER, replica_factory=factory
    )


@pytest.mark.parametrize("answer_each", [True, False])
def test_three_children_sharing_a_window_cost_the_parent_one_count(emulator, answer_each):
    """Before excludeEachVia the parent was asked the uncut count and then each child's
    cut count (four requests); now one. A parent that does not know the parameter
    answers the uncut count, and each child's is asked after it (four, as before).
    Either way the children share one export and get the parent's change."""
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ", "Texas")
    try:
        for _ in range(2):  # registered, then trusted on one watermark
            assert run(cluster).status == 0
        create_job(cluster.client("Parent"), "for everyone")
        factory = CountRequests(answer_each)
        result = run(cluster, factory)
        assert result.status == 0, result.summary_lines()
        assert all(c.received > 0 for c in result.children)
        exports = [e for e in factory.exports if e == cluster.parent.url]
        assert len(exports) == 1  # one export shared by the three
        asked = [c for c in factory.counts if c["url"] == cluster.parent.url]
        assert len(asked) == (1 if answer_each else 4), asked
        assert_converged(cluster)
    finally:
        cluster.close()
