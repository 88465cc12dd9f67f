"""gzip on the exchange: exports served compressed to clients that accept it, and the
engine's uploads sent with ``Content-Encoding: gzip``, through live emulators."""

from __future__ import annotations

import gzip
import os
import time

import pytest
import requests
from cluster import USER, make_cluster

from wmsync import engine, synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.app import Fault
from wmsync.errors import ConnectionFailed

NO_PROXY = {"http": "", "https": ""}


def exported(server, jobs=300):
    """A new export's URL (each export can be downloaded completely once)."""
    if jobs:
        server.store.bulk_insert_jobs(jobs)
    info = WMServerClient(server.url, user=USER).export(0)
    return info.jxl_url


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fetch(url, accept):
    """The bytes as they travel (not decoded) and the response headers."""
    with requests.get(
        url,
        params={"user": USER},
        headers={"Accept-Encoding": accept},
        stream=True,
        timeout=30,
        proxies=NO_PROXY,
    ) as answer:
        assert answer.status_code == 200
        return answer.raw.read(decode_content=False), answer.headers


def test_export_served_gzip_when_accepted_and_plain_otherwise(emulator):
    server = emulator("Parent")
    plain, plain_headers = fetch(exported(server), "identity")
    url = exported(server, jobs=0)
    packed, packed_headers = fetch(url, "gzip, deflate")
    assert "Content-Encoding" not in plain_headers and plain.startswith(b"<?xml")
    assert packed_headers["Content-Encoding"] == "gzip"
    assert int(packed_headers["Content-Length"]) == len(packed)
    assert "Accept-Encoding" in packed_headers["Vary"]
    unpacked = gzip.decompress(packed)
    assert unpacked.startswith(b"<?xml") and abs(len(unpacked) - len(plain)) < 100
    assert len(packed) * 5 < len(plain)
    # downloaded completely: the export and its gzip copy go (the server removes them
    # as it closes the answer, just after the client has read it), nothing half-written
    assert wait_until(lambda: not list(server.app.export_dir.iterdir()))
    gone = requests.get(url, params={"user": USER}, timeout=30, proxies=NO_PROXY)
    assert gone.json()["error"]["code"] == 404
    # refused when gzip has q=0
    assert "Content-Encoding" not in fetch(exported(server, jobs=0), "gzip;q=0")[1]


def test_gzip_exports_can_be_switched_off(emulator):
    server = emulator("Parent", gzip_exports=False)
    body, headers = fetch(exported(server), "gzip")
    assert "Content-Encoding" not in headers and body.startswith(b"<?xml")


def test_client_download_decodes_and_counts_wire_bytes(emulator, tmp_path):
    server = emulator("Parent")
    url = exported(server)
    plain = (server.app.export_dir / url.rsplit("/", 1)[1]).read_bytes()
    client = WMServerClient(server.url, user=USER)
    with open(tmp_path / "doc.jxl", "wb") as sink:
        written = client.download(url, sink)
    assert (tmp_path / "doc.jxl").read_bytes() == plain and written == len(plain)
    assert client.bytes_received * 5 < len(plain)  # what crossed the wire: compressed


def test_truncated_gzip_download_is_an_error(emulator, tmp_path):
    server = emulator("Parent", faults=[Fault("replication/exports", "truncate", times=1)])
    url = exported(server)
    client = WMServerClient(server.url, user=USER, retries=0)
    with pytest.raises(ConnectionFailed), open(tmp_path / "doc.jxl", "wb") as sink:
        client.download(url, sink)


@pytest.mark.parametrize("level", [1, 0])
def test_engine_uploads_gzip_and_repositories_converge(emulator, monkeypatch, level):
    monkeypatch.setattr(engine, "UPLOAD_GZIP_LEVEL", level)
    cluster = make_cluster(emulator, "Parent", "Ohio", "Texas")
    cluster.parent.store.bulk_insert_jobs(200)
    cluster.children[0].store.bulk_insert_jobs(50)
    uploads = []

    class Recording(WMServerClient):
        def import_document(self, path, merge=True, *, gzip=False, **mark):
            with open(path, "rb") as head:
                uploads.append((gzip, head.read(2) == b"\x1f\x8b", os.path.getsize(path)))
            return super().import_document(path, merge, gzip=gzip, **mark)

    result = synchronize(
        cluster.parent.url,
        "Parent",
        cluster.table(),
        client_factory=lambda url: Recording(url, user=USER),
    )
    assert result.status == 0, result.error
    assert uploads and all(flag == packed == bool(level) for flag, packed, _ in uploads)
    stores = [cluster.parent.store] + [c.store for c in cluster.children]
    assert stores[0].fingerprint() == stores[1].fingerprint() == stores[2].fingerprint()
    assert sum(1 for e in stores[0].elements() if e.kind == "Job") == 250
    # the temporary documents are gone, compressed copies included
    cluster.close()
