"""gzip on the exchange: exports served compressed to clients that accept it, and the
engine's uploads sent with ``Content-Encoding: gzip``, through live emulators."""

from __future__ import annotations

import gzip
import os

import pytest
import requests
from cluster import USER, make_cluster

from wmsync import engine, synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.app import Fault
from wmsync.errors import ConnectionFailed

NO_PROXY = {"http": "", "https": ""}


def exported(server, jobs=300):
    server.store.bulk_insert_jobs(jobs)
    info = WMServerClient(server.url, user=USER).export(0)
    return info.jxl_url


def fetch(url, accept):
    """The bytes as they travel (not decoded) and the response headers."""
    with requests.get(url, params={"user": USER}, headers={"Accept-Encoding": accept},
                      stream=True, timeout=30, proxies=NO_PROXY) as answer:
        assert answer.status_code == 200
        return answer.raw.read(decode_content=False), answer.headers


def test_export_served_gzip_when_accepted_and_plain_otherwise(emulator):
    server = emulator("Parent")
    url = exported(server)
    plain, plain_headers = fetch(url, "identity")
    packed, packed_headers = fetch(url, "gzip, deflate")
    assert "Content-Encoding" not in plain_headers and plain.startswith(b"<?xml")
    assert packed_headers["Content-Encoding"] == "gzip"
    assert int(packed_headers["Content-Length"]) == len(packed)
    assert "Accept-Encoding" in packed_headers["Vary"]
    assert gzip.decompress(packed) == plain
    assert len(packed) * 5 < len(plain)
    # written once, served again from the same copy; refused when gzip has q=0
    assert fetch(url, "gzip")[0] == packed
    assert "Content-Encoding" not in fetch(url, "gzip;q=0")[1]
    assert list(server.app.export_dir.glob("*.jxl.gz"))
    assert not list(server.app.export_dir.glob("*.part"))


def test_gzip_exports_can_be_switched_off(emulator):
    server = emulator("Parent", gzip_exports=False)
    body, headers = fetch(exported(server), "gzip")
    assert "Content-Encoding" not in headers and body.startswith(b"<?xml")


def test_client_download_decodes_and_counts_wire_bytes(emulator, tmp_path):
    server = emulator("Parent")
    url = exported(server)
    plain, _ = fetch(url, "identity")
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
        def import_document(self, path, merge=True, *, gzip=False):
            with open(path, "rb") as head:
                uploads.append((gzip, head.read(2) == b"\x1f\x8b", os.path.getsize(path)))
            return super().import_document(path, merge, gzip=gzip)

    result = synchronize(cluster.parent.url, "Parent", cluster.table(),
                         client_factory=lambda url: Recording(url, user=USER))
    assert result.status == 0, result.error
    assert uploads and all(flag == packed == bool(level) for flag, packed, _ in uploads)
    stores = [cluster.parent.store] + [c.store for c in cluster.children]
    assert stores[0].fingerprint() == stores[1].fingerprint() == stores[2].fingerprint()
    assert sum(1 for e in stores[0].elements() if e.kind == "Job") == 250
    # the temporary documents are gone, compressed copies included
    cluster.close()
