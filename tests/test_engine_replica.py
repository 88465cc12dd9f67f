"""The replica factory: which replica a server gets, decided once per URL per factory.

``replication/info`` is answered by a stand-in here (no network): the factory's choice
is the subject, not HTTP. The stock builder is a fake, as the stock replica lives in
its own package.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest
from memory_replica import MemoryCluster

from wmsync.client import (
    EXTENSION,
    WMServerClient,  # the extension replica is the client itself
)
from wmsync.engine import default_client_factory
from wmsync.errors import ConnectionFailed, MissingExtensions, ProtocolError
from wmsync.replica import default_replica_factory

STOCK = "http://stock.test/arcgis/rest/services/Ohio/WMServer"
OURS = "http://ours.test/arcgis/rest/services/Parent/WMServer"


@pytest.fixture
def reads(monkeypatch) -> List[str]:
    """Every replication/info read, by URL; extension marker only on OURS."""
    seen: List[str] = []
    lock = threading.Lock()

    real = WMServerClient.replication_info

    def replication_info(self, own_counter: bool = True) -> Dict[str, Any]:
        if self._held_info is not None:  # the factory's read, handed over: no read
            return real(self, own_counter)
        assert own_counter, "the factory reads the whole answer, to hand it over"
        with lock:
            seen.append(self.url)
        if "down" in self.url:
            raise ConnectionFailed("could not connect", self.url)
        info: Dict[str, Any] = {"nodes": []}
        if self.url == OURS:
            info.update(repository="Parent", extensions=[EXTENSION], generation=0)
        return info

    monkeypatch.setattr(WMServerClient, "replication_info", replication_info)
    return seen


def test_a_server_with_the_extensions_gets_the_client_itself(reads):
    make = default_replica_factory(user="tester")
    replica = make(OURS)
    try:
        assert isinstance(replica, WMServerClient)
        assert replica.display_url == OURS
    finally:
        replica.close()


def test_the_kind_is_read_once_per_url_per_factory(reads):
    make = default_replica_factory(user="tester")
    replicas = []

    def open_one() -> None:
        replicas.append(make(OURS))

    workers = [threading.Thread(target=open_one) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for replica in replicas:
        replica.close()
    assert len(replicas) == 6 and reads == [OURS]
    default_replica_factory(user="tester")(OURS).close()  # a new factory reads again
    assert reads == [OURS, OURS]


def test_a_stock_server_gets_what_the_stock_builder_builds(reads):
    fake = MemoryCluster("Ohio")
    built = []

    def stock(url: str, client: WMServerClient, info: Any) -> Any:
        built.append((url, info))
        client.close()
        return fake(fake["Ohio"].url)

    make = default_replica_factory(user="tester", stock=stock)
    first, second = make(STOCK), make(STOCK)
    assert first.repo is fake["Ohio"] and second.repo is fake["Ohio"]
    assert [url for url, _ in built] == [STOCK, STOCK]
    assert built[0][1] == {"nodes": []}  # the answer read once, handed to each build
    assert reads == [STOCK]
    assert isinstance(make(OURS), WMServerClient)  # the extension server still gets it


def test_without_a_stock_builder_a_stock_server_is_refused_as_before(reads):
    for make in (default_replica_factory(user="tester"), default_client_factory(user="t")):
        with pytest.raises(MissingExtensions, match="lacks the WorkflowSync replication"):
            make(STOCK)


def test_a_server_that_cannot_be_read_is_not_cached(reads):
    make = default_replica_factory(user="tester")
    down = "http://down.test/arcgis/rest/services/X/WMServer"
    for _ in range(2):
        with pytest.raises(ConnectionFailed):
            make(down)
    assert reads == [down, down]


def test_the_extension_replica_counts_through_countonly(monkeypatch):
    asked = []

    def get(self, path: str, **params: Any) -> Dict[str, Any]:
        asked.append((path, params))
        return {"generation": 9, "count": 4}

    monkeypatch.setattr(WMServerClient, "get", get)
    replica = WMServerClient(OURS, user="tester")
    try:
        assert replica.count_changes(3, "Ohio") == 4
    finally:
        replica.close()
    assert asked == [
        ("replication/export", {"sinceGen": 3, "excludeVia": "Ohio", "countOnly": "true"})
    ]


@pytest.mark.parametrize(
    "answer, missing",
    [
        ({"count": 4}, "generation"),
        ({"generation": "9", "count": 4}, "generation"),
        ({"generation": 9, "count": True}, "count"),
    ],
)
def test_a_count_without_an_integer_generation_or_count_is_refused_by_name(
    monkeypatch, answer, missing
):
    monkeypatch.setattr(WMServerClient, "get", lambda self, path, **params: answer)
    replica = WMServerClient(OURS, user="tester")
    try:
        with pytest.raises(ProtocolError, match=f"without an integer {missing}"):
            replica.count_window(3)
    finally:
        replica.close()


def test_the_window_count_carries_the_generation_it_was_made_at(monkeypatch):
    monkeypatch.setattr(
        WMServerClient, "get", lambda self, path, **params: {"generation": 9, "count": 0}
    )
    replica = WMServerClient(OURS, user="tester")
    try:
        assert replica.count_window(3, "Ohio") == (0, 9)
        assert replica.count_changes(3) == 0
    finally:
        replica.close()


def test_info_for_the_kind_leaves_out_the_own_counter_pass(emulator):
    server = emulator("Parent")
    client = WMServerClient(server.url, user="tester")
    try:
        assert client.replication_info()["ownCounter"] == 0
        assert "ownCounter" not in client.replication_info(own_counter=False)
    finally:
        client.close()


# -- the factory's read handed over (one request fewer per server and run) -----------


def test_the_factorys_read_answers_the_replicas_first_read(reads):
    make = default_replica_factory(user="tester")
    replica = make(OURS)
    try:
        answer = {"nodes": [], "repository": "Parent", "extensions": [EXTENSION], "generation": 0}
        first = replica.replication_info()
        assert first == answer and reads == [OURS]
        first["nodes"].append({"name": "changed by the caller"})  # the caller's own copy
        assert replica.replication_info() == answer
        assert reads == [OURS, OURS]  # handed over once: the next read asks
    finally:
        replica.close()


def test_a_held_read_is_let_go_when_another_replica_of_the_server_is_made(reads):
    make = default_replica_factory(user="tester")
    first = make(OURS)
    second = make(OURS)  # it could write before the first one reads
    try:
        first.replication_info()
        second.replication_info()
        assert reads == [OURS, OURS, OURS]
    finally:
        first.close()
        second.close()


def test_a_stock_servers_read_is_not_held(reads):
    built: List[WMServerClient] = []

    def stock(url: str, client: WMServerClient, info: Any) -> Any:
        built.append(client)
        return client

    default_replica_factory(user="tester", stock=stock)(STOCK)
    try:
        assert built[0]._held_info is None  # the stock replica reads its own state
    finally:
        built[0].close()


def test_a_held_read_is_let_go_once_the_client_asks_anything_else(emulator):
    server = emulator("Parent")
    make = default_replica_factory(user="tester")
    replica = make(server.url)
    try:
        replica.update_node("Ohio", server_url="http://ohio.test/WMServer", is_parent=False)
        names = [row["name"] for row in replica.replication_info()["nodes"]]
        assert "Ohio" in names  # read after the write, not the answer from before it
        assert replica.requests_made == 3  # the factory's read, the write, this read
    finally:
        replica.close()


def test_a_run_reads_each_servers_info_once(emulator, monkeypatch):
    from tests.cluster import create_job, make_cluster
    from wmsync import synchronize

    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    create_job(cluster.client("Parent"), "first")
    for _ in range(2):  # registered, then trusted
        assert synchronize(cluster.parent.url, "Parent", cluster.table(), user="t").status == 0
    create_job(cluster.client("Parent"), "second")
    infos: List[str] = []
    real_send = WMServerClient._send

    def send(self: WMServerClient, request: Any, token: Any, consume: Any) -> Any:
        if request.url.endswith("/replication/info"):
            infos.append(self.url)
        return real_send(self, request, token, consume)

    monkeypatch.setattr(WMServerClient, "_send", send)
    result = synchronize(cluster.parent.url, "Parent", cluster.table(), user="t")
    assert result.status == 0 and all(c.received for c in result.children)
    urls = [cluster.parent.url, *(child.url for child in cluster.children)]
    assert sorted(infos) == sorted(urls)  # without the hand-over: twice each
