"""Tests of wmsync.client (the WMServer REST client) and wmsync.transport (its plumbing).

Token sources and the token service: tests/test_auth.py."""

from __future__ import annotations

import gzip
import http.client
import http.server
import importlib
import inspect
import io
import json
import re
import socket
import ssl
import sys
import threading
import time
import types
from contextlib import contextmanager
from typing import Any, List
from urllib.parse import parse_qs, urlsplit

import certifi
import pytest
import requests
import responses
import urllib3

from wmsync import errors, transport
from wmsync.auth import TokenSource
from wmsync.client import TOKEN_HEADER, ExportInfo, WMServerClient

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

ROOT = "http://wm.example/arcgis/rest/services/Parent/WMServer"
TOKEN = "s3cret-T0KEN"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client():
    with WMServerClient(ROOT, user="DOM\\bob", token=TOKEN, retries=2, backoff=0) as c:
        yield c


def query(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def form(call) -> dict:
    body = call.request.body
    if isinstance(body, bytes):
        body = body.decode()
    return {k: v[0] for k, v in parse_qs(body or "").items()}


def assert_token_only_in_header(call) -> None:
    assert call.request.headers[TOKEN_HEADER] == f"Bearer {TOKEN}"
    assert TOKEN not in call.request.url
    body = call.request.body or b""
    assert TOKEN.encode() not in (body if isinstance(body, bytes) else str(body).encode())


def assert_clean(exc: BaseException) -> None:
    """A wmsync error that hides its origin and any token."""
    assert isinstance(exc, errors.WMSyncError)
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    assert TOKEN not in str(exc) and TOKEN not in repr(exc)


# -- construction ---------------------------------------------------------------------------


def test_url_is_normalised_and_case_kept():
    c = WMServerClient(ROOT.replace("Parent", "PaRent") + "/?f=pjson#x", user="bob")
    assert c.url == ROOT.replace("Parent", "PaRent")
    assert c.display_url == c.url
    assert c.user == "bob"


def test_token_planted_in_url_is_moved_to_header(rsps):
    c = WMServerClient(ROOT + "?token=PLANTED", user="bob", retries=0)
    assert "PLANTED" not in c.url + c.display_url + repr(c)
    rsps.get(ROOT, json={"name": "Parent"})
    c.service_info()
    assert rsps.calls[0].request.headers[TOKEN_HEADER] == "Bearer PLANTED"
    assert "PLANTED" not in rsps.calls[0].request.url


def test_not_an_http_url_is_refused():
    with pytest.raises(errors.ConnectionFailed):
        WMServerClient("ftp://host/WMServer", user="bob")
    with pytest.raises(errors.ConnectionFailed):
        WMServerClient("not a url", user="bob")


# -- success paths, exact parameters ---------------------------------------------------------


def test_service_info_sends_user_f_and_token_header(rsps, client):
    rsps.get(ROOT, json={"name": "Parent", "jobTypes": []})
    assert client.service_info()["name"] == "Parent"
    call = rsps.calls[0]
    assert query(call) == {"user": "DOM|bob", "f": "json"}
    assert_token_only_in_header(call)
    assert call.request.req_kwargs["timeout"] == (10.0, 60.0)
    assert call.request.headers["User-Agent"].startswith("wmsync/")


def test_replication_info_and_require_extensions(rsps, client):
    info = {
        "nodes": [],
        "repository": "Parent",
        "generation": 7,
        "extensions": ["wmsync-replication/1"],
    }
    rsps.get(ROOT + "/replication/info", json=info)
    got = client.replication_info()
    assert got == info
    assert query(rsps.calls[0]) == {"user": "DOM|bob", "f": "json"}
    client.require_extensions(got)


@pytest.fixture
def environment_reads(monkeypatch):
    """The URLs requests reads the environment's proxy settings for (HTTP_PROXY set)."""
    from requests import sessions

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    reads: List[str] = []
    real = sessions.get_environ_proxies

    def get_environ_proxies(url, no_proxy=None):
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(sessions, "get_environ_proxies", get_environ_proxies)
    return reads


def test_the_environment_is_read_once_per_server(rsps, client, environment_reads):
    rsps.get(ROOT + "/replication/info", json={"nodes": []})
    rsps.get("http://other.test/arcgis/rest/services/X/WMServer/replication/info", json={})
    for _ in range(3):
        client.replication_info()
    assert len(environment_reads) == 1  # requests alone reads it at every request
    settings = client._session.merge_environment_settings(ROOT, {}, True, True, None)
    assert settings["proxies"]["http"] == "http://proxy.test:3128"  # still applied
    settings["proxies"]["http"] = "changed by the caller"
    again = client._session.merge_environment_settings(ROOT, {}, True, True, None)
    assert again["proxies"]["http"] == "http://proxy.test:3128"
    other = WMServerClient("http://other.test/arcgis/rest/services/X/WMServer", user="bob")
    other._session.close()
    other._session = client._session  # another server on the same session: its own read
    other.replication_info()
    assert len(environment_reads) == 2


def test_the_clients_of_one_factory_read_the_environment_once_per_server(rsps, environment_reads):
    from wmsync.replica import default_replica_factory

    info = {"nodes": [], "repository": "Parent", "extensions": ["wmsync-replication/1"]}
    rsps.get(ROOT + "/replication/info", json=info)
    rsps.get(ROOT + "/replication/export", json={"count": 0, "generation": 7})
    make = default_replica_factory(user="bob")
    for _ in range(3):  # the engine makes a client per task, all of one run
        replica = make(ROOT)
        try:
            replica.count_changes(0)
        finally:
            replica.close()
    assert len(rsps.calls) == 4  # the factory's read of the kind, and three counts
    assert len(environment_reads) == 1
    # Another factory (the next run) reads it again: a changed environment is seen.
    make_again = default_replica_factory(user="bob")
    make_again(ROOT).close()
    assert len(environment_reads) == 2


def test_sessions_that_share_environment_settings_keep_their_own_settings_apart(
    environment_reads,
):
    shared = transport.EnvironmentSettings()
    trusting = transport.TokenSafeSession(shared)
    distrusting = transport.TokenSafeSession(shared)
    distrusting.trust_env = False  # as a caller may set on its own session
    first = trusting.merge_environment_settings(ROOT, {}, None, True, None)
    assert first["proxies"]["http"] == "http://proxy.test:3128"
    assert trusting.merge_environment_settings(ROOT, {}, None, True, None) == first
    assert len(environment_reads) == 1
    other = distrusting.merge_environment_settings(ROOT, {}, None, True, None)
    assert "http" not in other["proxies"]


@pytest.mark.parametrize(
    "info",
    [
        {"nodes": []},
        {"extensions": []},
        {"extensions": "wmsync-replication/1"},
        {"extensions": ["wmsync-replication/2"]},
    ],
)
def test_require_extensions_refuses(client, info):
    with pytest.raises(errors.MissingExtensions) as caught:
        client.require_extensions(info)
    assert "this server lacks the WorkflowSync replication extensions" in str(caught.value)
    assert ROOT in str(caught.value)
    assert isinstance(caught.value, errors.ProtocolError)


def test_update_node_sends_only_given_fields(rsps, client):
    rsps.post(ROOT + "/replication/nodes/update", json={"success": True, "lastSync": 1234})
    got = client.update_node(
        "Ohio",
        server_url="http://o/WMServer",
        is_parent=False,
        is_connected=True,
        last_sync_gen=812,
        sync_id="abc",
        stamp_last_sync=True,
        job_id_start=1000001,
        job_id_block=1000000,
    )
    assert got == 1234
    call = rsps.calls[0]
    assert form(call) == {
        "user": "DOM|bob",
        "f": "json",
        "name": "Ohio",
        "serverURL": "http://o/WMServer",
        "isParent": "false",
        "isConnected": "true",
        "lastSyncGen": "812",
        "syncId": "abc",
        "stampLastSync": "true",
        "jobIdStart": "1000001",
        "jobIdBlock": "1000000",
    }
    assert query(call) == {}
    assert_token_only_in_header(call)


def test_update_node_minimal_and_null_last_sync(rsps, client):
    rsps.post(ROOT + "/replication/nodes/update", json={"success": True, "lastSync": None})
    assert client.update_node("Ohio") is None
    assert form(rsps.calls[0]) == {"user": "DOM|bob", "f": "json", "name": "Ohio"}


def test_update_node_bad_last_sync_is_protocol_error(rsps, client):
    rsps.post(ROOT + "/replication/nodes/update", json={"success": True, "lastSync": "soon"})
    with pytest.raises(errors.ProtocolError):
        client.update_node("Ohio", stamp_last_sync=True)


def test_reset_node(rsps, client):
    rsps.post(ROOT + "/replication/nodes/reset", json={"success": True})
    assert client.reset_node("Ohio") is None
    assert form(rsps.calls[0]) == {"user": "DOM|bob", "f": "json", "name": "Ohio"}


def test_export(rsps, client):
    rsps.get(
        ROOT + "/replication/export",
        json={
            "jxlURL": ROOT + "/replication/exports/1.jxl",
            "generation": 9,
            "exportTime": 1754041845000,
            "count": 3,
        },
    )
    got = client.export(5, exclude_via="Ohio")
    assert got == ExportInfo(ROOT + "/replication/exports/1.jxl", 9, 1754041845000, 3)
    call = rsps.calls[0]
    assert query(call) == {"user": "DOM|bob", "f": "json", "sinceGen": "5", "excludeVia": "Ohio"}
    assert call.request.req_kwargs["timeout"] == (10.0, 600.0)
    assert_token_only_in_header(call)


def test_export_relative_url_and_no_exclude(rsps, client):
    rsps.get(
        ROOT + "/replication/export",
        json={"jxlURL": "replication/exports/2.jxl", "generation": 0, "exportTime": 1, "count": 0},
    )
    assert client.export(0).jxl_url == ROOT + "/replication/exports/2.jxl"
    assert "excludeVia" not in query(rsps.calls[0])


@pytest.mark.parametrize(
    "answer",
    [
        {"generation": 1, "exportTime": 1, "count": 1},
        {"jxlURL": "x.jxl", "generation": "1", "exportTime": 1, "count": 1},
        {"jxlURL": "x.jxl", "generation": 1, "exportTime": None, "count": 1},
        {"jxlURL": "x.jxl", "generation": 1, "exportTime": 1, "count": True},
    ],
)
def test_export_validates_answer(rsps, client, answer):
    rsps.get(ROOT + "/replication/export", json=answer)
    with pytest.raises(errors.ProtocolError):
        client.export(0)


def test_conflicts(rsps, client):
    rsps.get(ROOT + "/replication/conflicts", json={"conflicts": [{"guid": "g"}]})
    assert client.conflicts(3) == [{"guid": "g"}]
    assert query(rsps.calls[0])["sinceGen"] == "3"
    assert client.conflicts() == [{"guid": "g"}]
    assert "sinceGen" not in query(rsps.calls[1])


def test_conflicts_requires_list(rsps, client):
    rsps.get(ROOT + "/replication/conflicts", json={"conflicts": None})
    with pytest.raises(errors.ProtocolError):
        client.conflicts()


def test_get_and_post_encode_values(rsps, client):
    rsps.get(ROOT + "/jobs/5", json={"id": 5})
    rsps.post(ROOT + "/jobs/5/update", json={"success": True})
    assert client.get("/jobs/5", extra=None, flag=True) == {"id": 5}
    assert query(rsps.calls[0]) == {"user": "DOM|bob", "f": "json", "flag": "true"}
    client.post("jobs/5/update", properties={"priority": 3}, ids=[1, 2], user="OTHER\\amy")
    call = rsps.calls[1]
    assert form(call) == {
        "user": "OTHER|amy",
        "f": "json",
        "properties": '{"priority":3}',
        "ids": "[1,2]",
    }
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert_token_only_in_header(call)


def test_no_token_no_header(rsps):
    rsps.get(ROOT, json={})
    WMServerClient(ROOT, user="bob").service_info()
    assert TOKEN_HEADER not in rsps.calls[0].request.headers


# -- import and download ---------------------------------------------------------------------


def capture_bodies(rsps, url, answers):
    """Answer POSTs to *url* in turn with (status, body) from *answers*, keeping each
    request's body as bytes, read while the request is live (responses < 0.25.6 records
    the file object only, closed by then)."""
    bodies = []
    pending = iter(answers)

    def answer(request):
        body = request.body
        bodies.append(body.read() if hasattr(body, "read") else body)
        status, text = next(pending)
        return status, {}, text

    rsps.add_callback(responses.POST, url, callback=answer)
    return bodies


def test_import_document_streams_file(rsps, client, tmp_path):
    doc = tmp_path / "d.jxl"
    doc.write_bytes(b"<JobExchange version='1'/>")
    bodies = capture_bodies(
        rsps, ROOT + "/replication/import", [(200, '{"importTime": 1, "added": 2}')]
    )
    assert client.import_document(str(doc)) == {"importTime": 1, "added": 2}
    call = rsps.calls[0]
    assert query(call) == {"user": "DOM|bob", "merge": "true", "f": "json"}
    assert bodies == [b"<JobExchange version='1'/>"]
    assert call.request.headers["Content-Type"] == "application/xml"
    assert "Content-Encoding" not in call.request.headers
    assert call.request.req_kwargs["timeout"] == (10.0, 600.0)
    assert_token_only_in_header(call)
    assert client.bytes_sent == doc.stat().st_size


def test_import_document_gzip(rsps, client, tmp_path):
    doc = tmp_path / "d.jxl.gz"
    doc.write_bytes(gzip.compress(b"<JobExchange/>"))
    rsps.post(ROOT + "/replication/import", json={"importTime": 1})
    client.import_document(doc, merge=False, gzip=True)
    call = rsps.calls[0]
    assert call.request.headers["Content-Encoding"] == "gzip"
    assert query(call)["merge"] == "false"
    plain = tmp_path / "plain.jxl"
    plain.write_bytes(b"<JobExchange/>")
    with pytest.raises(ValueError):
        client.import_document(plain, gzip=True)


def test_import_missing_file_is_os_error(client, tmp_path):
    with pytest.raises(OSError):
        client.import_document(tmp_path / "nope.jxl")


JXL = ROOT + "/replication/exports/1.jxl"


def test_download_streams_to_file(rsps, client, tmp_path):
    payload = b"<JobExchange/>" * 20000  # several 64 KiB chunks
    rsps.get(JXL, body=payload, content_type="application/xml")
    with open(tmp_path / "x.jxl", "wb") as dest:
        assert client.download(JXL, dest) == len(payload)
    assert (tmp_path / "x.jxl").read_bytes() == payload
    call = rsps.calls[0]
    assert call.request.url == JXL  # no parameters on the document URL
    assert call.request.headers["Accept-Encoding"] == "gzip"
    assert call.request.req_kwargs["timeout"] == (10.0, 600.0)
    assert_token_only_in_header(call)
    assert client.bytes_received == len(payload)


def test_download_decodes_gzip(rsps, client):
    payload = b"<JobExchange>" + b"x" * 100000 + b"</JobExchange>"
    packed = gzip.compress(payload)
    rsps.get(
        JXL,
        body=packed,
        content_type="application/xml",
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))},
    )
    dest = io.BytesIO()
    assert client.download(JXL, dest) == len(payload)
    assert dest.getvalue() == payload
    assert client.bytes_received == len(packed)


def test_download_truncated_is_error(rsps, client):
    rsps.get(
        JXL,
        body=b"<JobExchange>",
        content_type="application/xml",
        headers={"Content-Length": "5000"},
        auto_calculate_content_length=False,
    )
    with pytest.raises(errors.ConnectionFailed) as caught:
        client.download(JXL, io.BytesIO())
    assert_clean(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example/arcgis/rest/services/Parent/WMServer/replication/exports/1.jxl",
        "http://wm.example:8080/x.jxl",
        "https://wm.example:8443/x.jxl",
        "ftp://wm.example/x.jxl",
    ],
)
def test_download_from_another_host_is_refused(rsps, client, url):
    with pytest.raises(errors.ProtocolError) as caught:
        client.download(url, io.BytesIO())
    assert "own host" in str(caught.value)
    assert len(rsps.calls) == 0


def test_download_https_upgrade_same_host_allowed(rsps, client):
    rsps.get("https://wm.example/x.jxl", body=b"<a/>", content_type="application/xml")
    assert client.download("https://wm.example/x.jxl", io.BytesIO()) == 4


def test_download_error_envelope(rsps, client):
    rsps.get(JXL, json={"error": {"code": 404, "message": "export expired", "details": []}})
    with pytest.raises(errors.NotFound):
        client.download(JXL, io.BytesIO())


def test_download_html_page(rsps, client):
    rsps.get(JXL, body="<html>login</html>", content_type="text/html")
    with pytest.raises(errors.ProtocolError, match="is this a WMServer URL"):
        client.download(JXL, io.BytesIO())


def test_download_text_plain_envelope_is_decoded(rsps, client):
    rsps.get(
        JXL,
        body=b' {"error": {"code": 498, "message": "Invalid token."}}',
        content_type="text/plain",
    )
    dest = io.BytesIO()
    with pytest.raises(errors.AuthenticationError):
        client.download(JXL, dest)
    assert dest.getvalue() == b""


def test_download_json_success_is_protocol_error(rsps, client):
    rsps.get(JXL, json={"jxlURL": "again"})
    with pytest.raises(errors.ProtocolError, match="not an exchange document"):
        client.download(JXL, io.BytesIO())


def test_download_empty_body(rsps, client):
    rsps.get(JXL, body=b"", content_type="application/xml")
    with pytest.raises(errors.ProtocolError, match="empty"):
        client.download(JXL, io.BytesIO())


def test_download_truncation_counted_when_urllib3_does_not_enforce(rsps, client, monkeypatch):
    """urllib3 1.26 does not check Content-Length itself: the client counts wire bytes."""
    original = urllib3.response.HTTPResponse.__init__

    def lenient(self, *args, **kwargs):
        kwargs["enforce_content_length"] = False
        original(self, *args, **kwargs)

    monkeypatch.setattr(urllib3.response.HTTPResponse, "__init__", lenient)
    rsps.get(
        JXL,
        body=b"<JobExchange>",
        content_type="application/xml",
        headers={"Content-Length": "5000"},
        auto_calculate_content_length=False,
    )
    with pytest.raises(errors.ConnectionFailed, match="cut off after 13 of 5000 bytes"):
        client.download(JXL, io.BytesIO())


# -- errors: envelopes, statuses, bodies -----------------------------------------------------


@pytest.mark.parametrize(
    "code, cls",
    [
        (400, errors.BadRequest),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDenied),
        (404, errors.NotFound),
        (409, errors.ConflictError),
        (498, errors.AuthenticationError),
        (499, errors.AuthenticationError),
        (500, errors.InternalServerError),
        (503, errors.InternalServerError),
        (418, errors.InternalServerError),
        ("498", errors.AuthenticationError),
        (None, errors.InternalServerError),
    ],
)
def test_error_envelope_with_http_200(rsps, client, code, cls):
    envelope = {
        "error": {"code": code, "message": "it went wrong", "details": [f"token {TOKEN} echoed"]}
    }
    rsps.get(ROOT + "/replication/info", json=envelope)
    with pytest.raises(errors.ServerError) as caught:
        client.replication_info()
    exc = caught.value
    assert type(exc) is cls
    assert exc.code == (int(code) if code else 500)
    assert exc.message == "it went wrong"
    assert exc.url == ROOT + "/replication/info"
    assert ROOT + "/replication/info" in str(exc)
    assert_clean(exc)
    assert len(rsps.calls) == 1  # a static token is not refreshed, nothing is retried


def test_http_500_html(rsps, client):
    rsps.get(
        ROOT, body="<html><body>Internal error</body></html>", status=500, content_type="text/html"
    )
    with pytest.raises(errors.InternalServerError) as caught:
        client.service_info()
    assert caught.value.code == 500
    assert "HTTP 500" in str(caught.value)
    assert "is this a WMServer URL" in str(caught.value)


def test_http_404_is_not_found(rsps, client):
    rsps.get(ROOT, body="<html>no</html>", status=404, content_type="text/html")
    with pytest.raises(errors.NotFound):
        client.service_info()


def test_http_status_with_envelope_uses_envelope(rsps, client):
    rsps.get(ROOT, json={"error": {"code": 403, "message": "no"}}, status=500)
    with pytest.raises(errors.PermissionDenied):
        client.service_info()


@pytest.mark.parametrize(
    "body, content_type, hint",
    [
        (b"<html><title>IIS</title></html>", "text/html", "is this a WMServer URL"),
        (b"<?xml version='1.0'?><a/>", "text/plain", "answered markup (text/plain), not JSON"),
        (b'{"nodes": [', "application/json", "malformed"),
        (b"nodes", "text/plain", "malformed"),
        (b"\xff\xfe\x00", "application/json", "malformed"),
        (b"%PDF-1.4", "application/pdf", "answered application/pdf, not JSON"),
        (b"", "application/json", "empty"),
        (b"   ", "application/json", "empty"),
        (b"[1, 2]", "application/json", "not an object"),
    ],
)
def test_answers_that_are_not_json_objects(rsps, client, body, content_type, hint):
    rsps.get(ROOT + "/replication/info", body=body, content_type=content_type)
    with pytest.raises(errors.ProtocolError) as caught:
        client.replication_info()
    assert hint in str(caught.value)
    assert ROOT + "/replication/info" in str(caught.value)


def test_success_false_is_server_error(rsps, client):
    rsps.post(ROOT + "/replication/nodes/reset", json={"success": False})
    with pytest.raises(errors.InternalServerError):
        client.reset_node("x")


def test_json_content_type_variants_accepted(rsps, client):
    rsps.get(ROOT, body=b'{"a": 1}', content_type="text/plain;charset=utf-8")
    rsps.get(ROOT + "/replication/info", body=b'{"b": 2}', content_type="application/vnd+json")
    assert client.service_info() == {"a": 1}
    assert client.replication_info() == {"b": 2}


# -- retries ---------------------------------------------------------------------------------


def test_502_is_retried_then_succeeds(rsps, client):
    rsps.get(ROOT + "/replication/info", status=502, body="bad gateway")
    rsps.get(ROOT + "/replication/info", json={"nodes": []})
    assert client.replication_info() == {"nodes": []}
    assert len(rsps.calls) == 2


def test_retry_exhaustion_is_clear(rsps, client):
    rsps.get(ROOT + "/replication/info", status=503, body="busy")
    with pytest.raises(errors.InternalServerError) as caught:
        client.replication_info()
    assert len(rsps.calls) == 3  # first try + retries=2
    assert caught.value.code == 503
    assert "still failing after 2 retries" in str(caught.value)


def test_changing_post_is_not_retried_on_502(rsps, client):
    rsps.post(ROOT + "/jobs/create", status=502, body="bad gateway")
    with pytest.raises(errors.InternalServerError) as caught:
        client.post("jobs/create", jobTypeId=1)
    assert len(rsps.calls) == 1
    assert "retries" not in str(caught.value)


def test_node_update_post_is_retried_on_503(rsps, client):
    rsps.post(ROOT + "/replication/nodes/update", status=503, body="busy")
    rsps.post(ROOT + "/replication/nodes/update", json={"success": True})
    client.update_node("Ohio", last_sync_gen=3)
    assert len(rsps.calls) == 2


def test_import_is_retried_on_504(rsps, client, tmp_path):
    doc = tmp_path / "d.jxl"
    doc.write_bytes(b"<JobExchange/>")
    rsps.post(ROOT + "/replication/import", status=504, body="timeout")
    rsps.post(ROOT + "/replication/import", json={"importTime": 5})
    assert client.import_document(doc)["importTime"] == 5
    assert len(rsps.calls) == 2
    assert client.requests_made == 1  # urllib3's retries happen below the client


# -- token: refresh, redirects ---------------------------------------------------------------


class RotatingToken:
    def __init__(self, tokens: List[str], can_refresh: bool = True) -> None:
        self.tokens = list(tokens)
        self.can_refresh = can_refresh
        self.refreshes = 0

    def get(self):
        return self.tokens[0]

    def refresh(self):
        self.refreshes += 1
        if self.can_refresh and len(self.tokens) > 1:
            self.tokens.pop(0)
            return True
        return False


def expired_unless(good: str):
    def answer(request):
        if request.headers.get(TOKEN_HEADER) == f"Bearer {good}":
            return 200, {}, json.dumps({"nodes": []})
        return 200, {}, json.dumps({"error": {"code": 498, "message": "Invalid token."}})

    return answer


def test_498_refreshes_once_and_retries(rsps):
    source = RotatingToken(["old", "new"])
    assert isinstance(source, TokenSource)
    rsps.add_callback(
        "GET",
        ROOT + "/replication/info",
        callback=expired_unless("new"),
        content_type="application/json",
    )
    c = WMServerClient(ROOT, user="bob", token=source, retries=0)
    assert c.replication_info() == {"nodes": []}
    assert source.refreshes == 1
    assert [call.request.headers[TOKEN_HEADER] for call in rsps.calls] == [
        "Bearer old",
        "Bearer new",
    ]
    assert c.requests_made == 2


def test_498_twice_is_authentication_error(rsps):
    source = RotatingToken(["old", "newer", "newest"])
    rsps.add_callback(
        "GET",
        ROOT + "/replication/info",
        callback=expired_unless("never"),
        content_type="application/json",
    )
    c = WMServerClient(ROOT, user="bob", token=source, retries=0)
    with pytest.raises(errors.AuthenticationError) as caught:
        c.replication_info()
    assert caught.value.code == 498
    assert source.refreshes == 1
    assert len(rsps.calls) == 2


def test_498_when_source_cannot_refresh(rsps):
    source = RotatingToken(["old", "new"], can_refresh=False)
    rsps.add_callback(
        "GET",
        ROOT + "/replication/info",
        callback=expired_unless("new"),
        content_type="application/json",
    )
    c = WMServerClient(ROOT, user="bob", token=source, retries=0)
    with pytest.raises(errors.AuthenticationError):
        c.replication_info()
    assert len(rsps.calls) == 1


def test_http_498_status_and_callable_token_refresh(rsps, tmp_path):
    tokens = iter(["one", "two"])
    doc = tmp_path / "d.jxl"
    doc.write_bytes(b"<JobExchange/>")
    bodies = capture_bodies(
        rsps, ROOT + "/replication/import", [(498, "expired"), (200, '{"importTime": 1}')]
    )
    c = WMServerClient(ROOT, user="bob", token=lambda: next(tokens), retries=0)
    assert c.import_document(doc) == {"importTime": 1}
    assert bodies == [b"<JobExchange/>"] * 2
    assert rsps.calls[1].request.headers[TOKEN_HEADER] == "Bearer two"


def test_token_fetch_failure_is_authentication_error(rsps):
    def fetch():
        raise RuntimeError("password hunter2 rejected")

    c = WMServerClient(ROOT, user="bob", token=fetch)
    with pytest.raises(errors.AuthenticationError) as caught:
        c.service_info()
    assert "hunter2" not in str(caught.value) and "RuntimeError" in str(caught.value)
    assert caught.value.__context__ is None
    assert len(rsps.calls) == 0


def test_token_refresh_failure_keeps_the_498(rsps):
    class Broken(RotatingToken):
        def refresh(self):
            raise OSError("token URL down")

    rsps.add_callback(
        "GET", ROOT, callback=expired_unless("never"), content_type="application/json"
    )
    c = WMServerClient(ROOT, user="bob", token=Broken(["old"]), retries=0)
    with pytest.raises(errors.AuthenticationError) as caught:
        c.service_info()
    assert caught.value.code == 498
    assert len(rsps.calls) == 1


def test_cross_host_redirect_drops_token(rsps, client):
    other = "http://elsewhere.example/WMServer/replication/info"
    rsps.get(ROOT + "/replication/info", status=302, headers={"Location": other})
    rsps.get(other, json={"nodes": []})
    assert client.replication_info() == {"nodes": []}
    assert rsps.calls[0].request.headers[TOKEN_HEADER] == f"Bearer {TOKEN}"
    assert TOKEN_HEADER not in rsps.calls[1].request.headers


def test_same_host_redirect_keeps_token(rsps, client):
    moved = "http://wm.example/arcgis/rest/services/Moved/WMServer/replication/info"
    rsps.get(ROOT + "/replication/info", status=301, headers={"Location": moved})
    rsps.get(moved, json={"nodes": []})
    client.replication_info()
    assert rsps.calls[1].request.headers[TOKEN_HEADER] == f"Bearer {TOKEN}"


def test_injected_session_does_not_follow_redirects_with_token(rsps):
    other = "http://elsewhere.example/x"
    rsps.get(ROOT + "/replication/info", status=302, headers={"Location": other})
    session = requests.Session()
    c = WMServerClient(ROOT, user="bob", token=TOKEN, session=session)
    with pytest.raises(errors.ProtocolError, match=r"redirected to http://elsewhere\.example/x"):
        c.replication_info()
    assert len(rsps.calls) == 1
    c.close()
    session.close()


# -- transport failures on real loopback sockets ----------------------------------------------


@contextmanager
def silent_server():
    """A loopback port that accepts connections and never answers; counts connections."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/arcgis/rest/services/S/WMServer", held
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def test_read_timeout_is_timed_out():
    with silent_server() as (url, _held):
        c = WMServerClient(url, user="bob", token=TOKEN, timeout=0.2, retries=0)
        started = time.monotonic()
        with pytest.raises(errors.TimedOut) as caught:
            c.replication_info()
        assert time.monotonic() - started < 2
        assert "0.2 s" in str(caught.value)
        assert_clean(caught.value)
        c.close()


def test_read_timeout_retry_policy(tmp_path):
    doc = tmp_path / "d.jxl"
    doc.write_bytes(b"<JobExchange/>")
    with silent_server() as (url, held):
        c = WMServerClient(
            url, user="bob", timeout=0.15, transfer_timeout=0.15, retries=1, backoff=0
        )
        with pytest.raises(errors.TimedOut) as caught:
            c.get("jobs")  # a read: retried
        assert len(held) == 2
        # The truth about the wait: not "within 0.15 s" alone after two tries.
        assert re.search(r"no answer within 0\.15 s, 2 tries over 0\.[3-9] s", str(caught.value))
        with pytest.raises(errors.TimedOut) as caught:
            c.post("jobs/create", jobTypeId=1)  # a change: never repeated
        assert len(held) == 3
        assert "no answer within 0.15 s (read timeout)" in str(caught.value)
        with pytest.raises(errors.TimedOut):
            c.import_document(doc)  # idempotent: retried
        assert len(held) == 5
        c.close()


def test_connection_refused_is_connection_failed():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    c = WMServerClient(f"http://127.0.0.1:{port}/WMServer?token={TOKEN}", user="bob", retries=0)
    with pytest.raises(errors.ConnectionFailed) as caught:
        c.service_info()
    assert "refused" in str(caught.value).lower()
    assert f"127.0.0.1:{port}/WMServer" in str(caught.value)
    assert_clean(caught.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first import, then records and accepts."""

    bodies: List[bytes] = []
    answers: List[int] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(self.rfile.read(length))
        status = type(self).answers.pop(0) if type(self).answers else 200
        payload = json.dumps({"importTime": 1} if status == 200 else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_import_retry_resends_the_whole_file(tmp_path):
    """urllib3 rewinds the streamed file body when it retries a 503 on a real socket."""
    doc = tmp_path / "d.jxl"
    doc.write_bytes(b"<JobExchange>" + b"x" * 200000 + b"</JobExchange>")
    handler = type("H", (_Handler,), {"bodies": [], "answers": [503]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/arcgis/rest/services/S/WMServer"
        with WMServerClient(url, user="bob", retries=2, backoff=0) as c:
            assert c.import_document(doc) == {"importTime": 1}
        assert handler.bodies == [doc.read_bytes()] * 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


# -- every requests exception maps to a wmsync error -----------------------------------------


def _requests_exception_classes():
    return sorted(
        (
            cls
            for _, cls in inspect.getmembers(requests.exceptions, inspect.isclass)
            if issubclass(cls, requests.RequestException)
        ),
        key=lambda cls: cls.__name__,
    )


def _make(cls):
    text = f"HTTPConnectionPool: Max retries exceeded with url: /x?token={TOKEN}"
    try:
        return cls(text)
    except TypeError:  # JSONDecodeError wants (msg, doc, pos)
        return cls(text, "doc", 0)


EXPECTED = {
    "ConnectTimeout": errors.TimedOut,
    "ReadTimeout": errors.TimedOut,
    "Timeout": errors.TimedOut,
    "ConnectionError": errors.ConnectionFailed,
    "SSLError": errors.ConnectionFailed,
    "ProxyError": errors.ConnectionFailed,
    "ChunkedEncodingError": errors.ConnectionFailed,
    "InvalidURL": errors.ConnectionFailed,
    "ContentDecodingError": errors.ProtocolError,
    "TooManyRedirects": errors.ProtocolError,
    "RetryError": errors.TransportError,
}


def test_walk_covers_the_requests_tree():
    names = {cls.__name__ for cls in _requests_exception_classes()}
    assert {
        "RequestException",
        "ConnectionError",
        "Timeout",
        "SSLError",
        "RetryError",
        "ChunkedEncodingError",
        "InvalidURL",
        "TooManyRedirects",
    } <= names
    assert len(names) >= 20


@pytest.mark.parametrize("cls", _requests_exception_classes(), ids=lambda c: c.__name__)
def test_every_requests_exception_maps(monkeypatch, cls):
    c = WMServerClient(ROOT, user="bob", token=TOKEN, retries=0)

    def fail(request, **kwargs):
        raise _make(cls)

    monkeypatch.setattr(c._session, "send", fail)
    with pytest.raises(errors.WMSyncError) as caught:
        c.replication_info()
    exc = caught.value
    assert isinstance(exc, errors.RepositoryError)
    assert not isinstance(exc, requests.RequestException)
    assert_clean(exc)
    assert ROOT + "/replication/info" in str(exc)
    if cls.__name__ in EXPECTED:
        assert type(exc) is EXPECTED[cls.__name__]


@pytest.mark.parametrize(
    "raised, expected",
    [
        (
            requests.ConnectionError(
                urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")
            ),
            errors.TimedOut,
        ),
        (
            requests.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,
                    "/x?token=" + TOKEN,
                    urllib3.exceptions.NewConnectionError(None, "[Errno 111] Connection refused"),
                )
            ),
            errors.ConnectionFailed,
        ),
        (urllib3.exceptions.ProtocolError("Connection broken"), errors.ConnectionFailed),
        (http.client.IncompleteRead(b"abc", 10), errors.ConnectionFailed),
    ],
)
def test_bare_transport_exceptions_map(monkeypatch, raised, expected):
    c = WMServerClient(ROOT, user="bob", token=TOKEN, retries=0)

    def fail(request, **kwargs):
        raise raised

    monkeypatch.setattr(c._session, "send", fail)
    with pytest.raises(expected) as caught:
        c.service_info()
    assert_clean(caught.value)


def test_error_reason_is_short_and_url_free(monkeypatch):
    c = WMServerClient(ROOT, user="bob", retries=0)
    inner = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    outer = requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/secret/path?token=zzz", inner)
    )

    def fail(request, **kwargs):
        raise outer

    monkeypatch.setattr(c._session, "send", fail)
    with pytest.raises(errors.ConnectionFailed) as caught:
        c.service_info()
    assert "Connection refused" in str(caught.value)
    assert "secret" not in str(caught.value) and "zzz" not in str(caught.value)


# -- TLS verification, counters, life cycle ---------------------------------------------------


@pytest.fixture
def fresh_truststore_lookup():
    """The client looks for truststore once per process: these tests look again."""
    transport._truststore.cache_clear()
    yield
    transport._truststore.cache_clear()


def test_truststore_is_looked_for_once(monkeypatch, fresh_truststore_lookup):
    looked: List[str] = []
    real = importlib.import_module

    def spy(name: str, *args: Any) -> Any:
        looked.append(name)
        return real(name, *args)

    monkeypatch.setitem(sys.modules, "truststore", None)  # import raises ImportError
    monkeypatch.setattr(transport.importlib, "import_module", spy)
    for _ in range(3):
        WMServerClient(ROOT, user="bob").close()
    assert looked == ["truststore"]


def test_truststore_context_used_when_available(monkeypatch, fresh_truststore_lookup):
    made = []

    def SSLContext(protocol):
        ctx = ssl.create_default_context()
        made.append(ctx)
        return ctx

    monkeypatch.setitem(sys.modules, "truststore", types.SimpleNamespace(SSLContext=SSLContext))
    c = WMServerClient(ROOT, user="bob")
    adapter = c._session.get_adapter("https://wm.example/x")
    assert made and adapter.poolmanager.connection_pool_kw["ssl_context"] is made[0]
    assert c._session.get_adapter(ROOT + "/replication/import")._ssl_context is made[0]
    made.clear()
    WMServerClient(ROOT, user="bob", verify=False)
    assert made == []  # no checks, no store
    bundle = certifi.where()
    c = WMServerClient(ROOT, user="bob", verify=bundle)
    assert len(made) == 1  # a CA bundle is added to the system store, not instead of it
    assert c._session.get_adapter("https://wm.example/x")._ssl_context is made[0]


def test_without_truststore_requests_default(monkeypatch, fresh_truststore_lookup):
    monkeypatch.setitem(sys.modules, "truststore", None)  # import raises ImportError
    c = WMServerClient(ROOT, user="bob")
    adapter = c._session.get_adapter("https://wm.example/x")
    assert "ssl_context" not in adapter.poolmanager.connection_pool_kw


@pytest.mark.parametrize("verify", [True, False])
def test_verify_is_passed_on(rsps, verify):
    rsps.get(ROOT, json={})
    WMServerClient(ROOT, user="bob", verify=verify).service_info()
    assert rsps.calls[0].request.req_kwargs["verify"] == verify


def test_a_ca_bundle_is_added_to_the_default_store(rsps, monkeypatch, fresh_truststore_lookup):
    monkeypatch.setitem(sys.modules, "truststore", None)
    rsps.get(ROOT, json={})
    client = WMServerClient(ROOT, user="bob", verify=certifi.where())
    client.service_info()
    assert rsps.calls[0].request.req_kwargs["verify"] is True
    context = client._session.get_adapter("https://wm.example/x")._ssl_context
    assert context is not None and context.cert_store_stats()["x509_ca"] > 1


def test_a_missing_ca_bundle_is_a_clear_error():
    with pytest.raises(OSError):
        WMServerClient(ROOT, user="bob", verify="/nonexistent/ca.pem")


def test_adapters_carry_the_retry_policy():
    c = WMServerClient(ROOT, user="bob", retries=4, backoff=0.25)
    plain = c._session.get_adapter(ROOT + "/jobs/create").max_retries
    for op in ("replication/import", "replication/nodes/update"):
        idem = c._session.get_adapter(f"{ROOT.upper()}/{op}?user=x".replace("HTTP:", "http:"))
        assert "POST" in idem.max_retries.allowed_methods
    assert "POST" not in plain.allowed_methods
    assert plain.total == plain.connect == plain.read == plain.status == 4
    assert plain.backoff_factor == 0.25
    assert set(plain.status_forcelist) == {502, 503, 504}
    assert plain.raise_on_status is False and plain.respect_retry_after_header is True
    other = c._session.get_adapter(ROOT + "/replication/nodes/reset").max_retries
    assert "POST" not in other.allowed_methods


def test_counters(rsps, client):
    rsps.get(ROOT, json={"name": "P"})
    rsps.post(ROOT + "/jobs/1/notes/update", json={"success": True})
    client.service_info()
    client.post("jobs/1/notes/update", notes="hello")
    assert client.requests_made == 2
    assert client.bytes_received == len(b'{"name": "P"}') + len(b'{"success": true}')
    assert client.bytes_sent == len(rsps.calls[1].request.body)


def test_close_owned_but_not_injected_session(monkeypatch):
    closed = []
    c = WMServerClient(ROOT, user="bob")
    monkeypatch.setattr(c._session, "close", lambda: closed.append("own"))
    with c:
        pass
    assert closed == ["own"]
    session = requests.Session()
    monkeypatch.setattr(session, "close", lambda: closed.append("injected"))
    WMServerClient(ROOT, user="bob", session=session).close()
    assert closed == ["own"]


# -- wmsync.transport on its own ----------------------------------------------------------------


def test_mapped_errors_translates_transport_errors_only():
    from wmsync.transport import mapped_errors

    with pytest.raises(errors.ConnectionFailed) as caught:
        with mapped_errors(ROOT, (1.0, 2.0), 0):
            raise requests.ConnectionError(f"refused at {ROOT}?token={TOKEN}")
    assert_clean(caught.value)
    with pytest.raises(errors.NotFound):  # a wmsync error passes as it is
        with mapped_errors(ROOT, (1.0, 2.0), 0):
            raise errors.NotFound(404, "gone", None, ROOT)
    with pytest.raises(KeyError):  # a bug is not disguised as a network failure
        with mapped_errors(ROOT, (1.0, 2.0), 0):
            raise KeyError("x")


def test_a_timeout_after_retries_says_how_long_was_waited():
    from wmsync.transport import transport_error

    inner = urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out")
    exhausted = requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", inner))
    text = str(transport_error(exhausted, ROOT, (10.0, 3.0), retries=3, elapsed=15.2))
    assert "no answer within 3 s, 4 tries over 15 s" in text
    single = str(
        transport_error(requests.ReadTimeout("x"), ROOT, (10.0, 3.0), retries=3, elapsed=3.1)
    )
    assert "no answer within 3 s (read timeout)" in single and "tries" not in single
    connect = urllib3.exceptions.ConnectTimeoutError(None, "timed out")
    text = str(
        transport_error(
            requests.ConnectTimeout(urllib3.exceptions.MaxRetryError(None, "/x", connect)),
            ROOT,
            (10.0, 3.0),
            retries=2,
            elapsed=31.0,
        )
    )
    assert "could not connect within 10 s, 3 tries over 31 s" in text
