"""Export files never pile up: removed once downloaded completely, removed after the
keep time (swept on later export requests; clock injected), and ``countOnly=true``
writes nothing."""

from __future__ import annotations

import time

import requests

from wmsync.client import WMServerClient
from wmsync.emulator.app import Fault

USER = "sync"


def export(server, **params):
    answer = requests.get(
        server.url + "/replication/export", params={"user": USER, "f": "json", **params}, timeout=30
    )
    return answer.json()


def files(server):
    return sorted(p.name for p in server.app.export_dir.iterdir())


def settle(server, most):
    """The server removes a downloaded export as it closes the answer, just after the
    client has read the last byte: give it a moment."""
    deadline = time.monotonic() + 5
    while len(files(server)) > most and time.monotonic() < deadline:
        time.sleep(0.01)
    return files(server)


def test_fifty_export_and_download_cycles_leave_at_most_a_few_files(emulator, tmp_path):
    server = emulator("Parent")
    server.store.bulk_insert_jobs(50)
    client = WMServerClient(server.url, user=USER)
    for cycle in range(50):
        info = client.export(0)
        with open(tmp_path / "doc.jxl", "wb") as sink:
            assert client.download(info.jxl_url, sink) > 0
        if cycle % 10 == 0:
            assert len(files(server)) <= 3
    assert len(settle(server, 0)) <= 2


def test_count_only_writes_nothing_and_counts_what_an_export_holds(emulator):
    server = emulator("Parent")
    server.store.bulk_insert_jobs(7)
    before = files(server)
    for _ in range(50):
        counted = export(server, countOnly="true")
    assert files(server) == before == []
    assert "jxlURL" not in counted
    full = export(server)
    assert counted["count"] == full["count"] and counted["generation"] == full["generation"]
    assert counted["counts"]["Job"] == 7 and sum(counted["counts"].values()) == counted["count"]
    since = export(server, countOnly="true", sinceGen=str(full["generation"]))
    assert since["count"] == 0 and since["counts"] == {}


def test_exports_never_downloaded_are_swept_after_the_keep_time(emulator):
    now = [time.time()]
    server = emulator("Parent", wall_clock=lambda: now[0])
    first = export(server)
    second = export(server)
    assert len(files(server)) == 2
    now[0] += 3599
    export(server)
    assert len(files(server)) == 3  # not an hour old yet
    now[0] += 2
    third = export(server, countOnly="true")
    assert "count" in third and files(server) == []  # the sweep took all three
    gone = requests.get(first["jxlURL"], params={"f": "json"}, timeout=10).json()
    assert gone["error"]["code"] == 404
    assert second["jxlURL"] != first["jxlURL"]


def test_a_download_cut_short_keeps_the_export_for_the_retry(emulator, tmp_path):
    server = emulator("Parent", faults=[Fault("replication/exports", "truncate", times=1)])
    server.store.bulk_insert_jobs(200)
    info = export(server)
    cut = requests.get(info["jxlURL"], timeout=10, stream=True)
    try:
        cut.raw.read()
    except Exception:  # the connection closes short of Content-Length
        pass
    cut.close()
    time.sleep(0.2)
    export_file = info["jxlURL"].rsplit("/", 1)[1]
    assert export_file in files(server)  # still there: it was not sent completely
    whole = requests.get(info["jxlURL"], headers={"Accept-Encoding": "identity"}, timeout=10)
    assert whole.content.startswith(b"<?xml") and whole.content.rstrip().endswith(b">")
    assert settle(server, 0) == []
