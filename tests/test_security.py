"""Security (docs/design.md §7): TLS verified by default, no secret ever shown, an
emulator with a token refuses everyone else, loopback by default.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import requests
from cluster import create_job
from fake_arcpy.fixtures import PYT, arcpy_fixture  # noqa: F401
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from wmsync import cli, synchronize
from wmsync.auth import generate_token
from wmsync.client import WMServerClient
from wmsync.emulator import server as emulator_server
from wmsync.emulator.app import EmulatorConfig, create_app
from wmsync.errors import AuthenticationError, ConnectionFailed, WMSyncError

USER = "tester"
TOKEN = "PLANTEDtoken7c1f0e9a42"
PASSWORD = "PLANTEDpassw0rd+&=%;x"


def run_cli(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


@pytest.fixture
def https_pair(emulator, certificate):
    parent = emulator("Parent", ssl_context=certificate)
    child = emulator("Ohio", ssl_context=certificate)
    assert parent.url.startswith("https://127.0.0.1:")
    return parent, child


def tls_args(parent, child, *extra):
    return [
        "sync",
        "--parent-url",
        parent.url,
        "--parent-name",
        "Parent",
        "--children",
        f"Ohio true {child.url} ''",
        "--user",
        USER,
        *extra,
    ]


def test_tls_is_verified_by_default_and_a_ca_bundle_makes_it_work(https_pair, certificate):
    parent, child = https_pair
    with (
        WMServerClient(parent.url, user=USER) as client,
        pytest.raises(ConnectionFailed) as refused,
    ):
        client.replication_info()
    assert "certificate" in str(refused.value) and "127.0.0.1" in str(refused.value)
    with WMServerClient(parent.url, user=USER, verify=certificate[0]) as client:
        assert client.replication_info()["repository"] == "Parent"

    denied = run_cli(*tls_args(parent, child))
    assert denied.returncode == 2, denied.stdout + denied.stderr
    assert "certificate verify failed" in denied.stdout
    assert "Traceback" not in denied.stdout + denied.stderr

    trusted = run_cli(*tls_args(parent, child, "--ca-bundle", certificate[0]))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "Ohio: synchronized" in trusted.stdout


def test_insecure_works_and_says_so(https_pair):
    parent, child = https_pair
    done = run_cli(*tls_args(parent, child, "--insecure"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: TLS certificate checks are OFF (--insecure)" in done.stderr


# -- secrets never shown -------------------------------------------------------------------


@pytest.fixture
def token_service():
    """A tiny ArcGIS ``generateToken`` endpoint: the planted password gets the planted
    token; a wrong one gets an error that (carelessly) echoes the password it was sent."""

    def app(environ, start_response):
        request = Request(environ)
        password = request.form.get("password", "")
        if request.method == "POST" and password == PASSWORD:
            payload = {"token": TOKEN, "expires": 9999999999999, "ssl": False}
        else:
            payload = {
                "error": {
                    "code": 400,
                    "message": f"Invalid password {password!r}",
                    "details": [f"user {request.form.get('username')} password {password}"],
                }
            }
        return Response(json.dumps(payload), mimetype="application/json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/portal/sharing/rest/generateToken"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture
def guarded(emulator):
    """A parent and two children that require the planted token."""
    servers = [emulator(name, token=TOKEN) for name in ("Parent", "Ohio", "AZ")]
    with WMServerClient(servers[1].url, user=USER, token=TOKEN) as ohio:
        create_job(ohio, "needs the token")
    return servers


def assert_clean(*texts):
    for text in texts:
        assert TOKEN not in text
        assert PASSWORD not in text
        for part in (PASSWORD[:12], TOKEN[6:]):  # also no half of either
            assert part not in text


def test_a_planted_token_and_password_never_appear_anywhere(guarded, token_service, tmp_path):
    parent, ohio, az = guarded
    report, log_file = tmp_path / "report.json", tmp_path / "sync.log"
    # Texas names AZ's server: it fails at once, with its (token-bearing) URL in the error.
    table = (
        f"Ohio true {ohio.url}?token={TOKEN} '';AZ true {az.url} '';"
        f"Texas true {az.url}?token={TOKEN} ''"
    )
    done = run_cli(
        "sync",
        "--parent-url",
        parent.url + f"?token={TOKEN}",
        "--parent-name",
        "Parent",
        "--children",
        table,
        "--user",
        USER,
        "--token-url",
        token_service,
        "--username",
        "admin",
        "--report",
        str(report),
        "--log-file",
        str(log_file),
        "-vv",
        env={"WMSYNC_PASSWORD": PASSWORD},
    )
    assert done.returncode == 1, done.stdout + done.stderr  # Texas failed, the rest worked
    assert "Ohio: synchronized" in done.stdout and "Texas: FAILED" in done.stdout
    assert_clean(done.stdout, done.stderr, report.read_text(), log_file.read_text())
    assert "token=***" in report.read_text()  # the row's URL is shown, redacted


def test_a_refused_password_is_not_echoed_back_to_the_user(guarded, token_service, tmp_path):
    parent, ohio, _ = guarded
    log_file = tmp_path / "sync.log"
    done = run_cli(
        "sync",
        "--parent-url",
        parent.url,
        "--parent-name",
        "Parent",
        "--children",
        f"Ohio true {ohio.url} ''",
        "--user",
        USER,
        "--token-url",
        token_service,
        "--username",
        "admin",
        "--log-file",
        str(log_file),
        env={"WMSYNC_PASSWORD": "wrong-" + PASSWORD},
    )
    assert done.returncode == 2
    assert "Invalid password" in done.stderr  # the service's message, without the password
    logged = log_file.read_text() if log_file.exists() else ""
    assert_clean(done.stdout, done.stderr, logged)
    with pytest.raises(WMSyncError) as refused:
        generate_token(token_service, "admin", "wrong-" + PASSWORD)
    exc = refused.value
    assert_clean(str(exc), repr(exc), repr(exc.args), " ".join(getattr(exc, "details", [])))


class Expiring:
    """A WSGI wrapper in front of an emulator: each token the ``rotating`` fixture
    issues is good for 12 requests across the cluster, then it is answered 498 (Esri's
    "invalid or expired token" envelope) and ``ledger["on_expired"]`` is called once; a
    token never issued gets 403."""

    def __init__(self, inner, ledger):
        self.inner, self.ledger = inner, ledger

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_X_ESRI_AUTHORIZATION", "")
        sent = header[7:] if header.lower().startswith("bearer ") else ""
        with self.ledger["lock"]:
            left = self.ledger["uses"].get(sent)
            if left is not None and left > 0:
                self.ledger["uses"][sent] = left - 1
                self.ledger["served"][sent] = self.ledger["served"].get(sent, 0) + 1
            elif left == 0:
                self.ledger["uses"][sent] = -1
                self.ledger["on_expired"]()
        if left is None:
            error = {"code": 403, "message": "Invalid token", "details": []}
        elif left <= 0:
            error = {"code": 498, "message": "Invalid token.", "details": []}
        else:
            return self.inner(environ, start_response)
        return Response(json.dumps({"error": error}), mimetype="application/json")(
            environ, start_response
        )


@pytest.fixture
def rotating(tmp_path):
    """A cluster behind :class:`Expiring` and a ``generateToken`` service that hands out
    a new planted token on each call; yields (ledger, token URL, parent URL, Ohio URL)."""
    ledger = {
        "lock": threading.RLock(),
        "uses": {},
        "served": {},
        "issued": [],
        "on_expired": lambda: None,
    }

    def issue():
        with ledger["lock"]:
            token = f"{TOKEN}-{len(ledger['issued'])}"
            ledger["issued"].append(token)
            ledger["uses"][token] = 12
            return token

    ledger["issue"] = issue

    def service(environ, start_response):
        payload = {"token": issue(), "expires": 9999999999999, "ssl": False}
        return Response(json.dumps(payload), mimetype="application/json")(environ, start_response)

    servers = []
    for name, app in [("portal", service)] + [
        (
            name,
            Expiring(
                create_app(
                    EmulatorConfig(repository=name, db_path=str(tmp_path / f"{name}.sqlite"))
                ),
                ledger,
            ),
        )
        for name in ("Parent", "Ohio")
    ]:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append((name, server))
    urls = {
        name: emulator_server.root_url("127.0.0.1", server.server_port, name)
        for name, server in servers
    }
    portal = servers[0][1].server_port
    try:
        yield (
            ledger,
            f"http://127.0.0.1:{portal}/portal/sharing/rest/generateToken",
            urls["Parent"],
            urls["Ohio"],
        )
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()


def test_a_token_that_expires_during_a_run_is_fetched_again(rotating, tmp_path):
    ledger, token_url, parent, ohio = rotating
    log_file, report = tmp_path / "sync.log", tmp_path / "report.json"
    done = run_cli(
        "sync",
        "--parent-url",
        parent,
        "--parent-name",
        "Parent",
        "--children",
        f"Ohio true {ohio} ''",
        "--user",
        USER,
        "--token-url",
        token_url,
        "--username",
        "admin",
        "--log-file",
        str(log_file),
        "-vv",
        "--report",
        str(report),
        env={"WMSYNC_PASSWORD": PASSWORD},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ohio: synchronized" in done.stdout
    issued = ledger["issued"]
    assert len(issued) >= 2  # the first one ran out mid-run and a new one was fetched
    assert all(ledger["served"].get(token, 0) > 0 for token in issued)
    logged = log_file.read_text()
    assert "retrying with a new one" in logged
    for token in issued:  # every token fetched, not only the first, is kept out of sight
        for text in (done.stdout, done.stderr, logged, report.read_text()):
            assert token not in text
    assert_clean(done.stdout, done.stderr, logged, report.read_text())


def test_the_toolbox_renews_an_expired_signin_token_on_the_tool_thread(
    arcpy, rotating, monkeypatch
):
    ledger, _, parent, ohio = rotating
    monkeypatch.setenv("WMSYNC_USER", USER)
    arcpy._fake.set_signin_token(ledger["issue"]())
    # Pro renews its sign-in token itself; the old one then expires on the servers.
    ledger["on_expired"] = lambda: arcpy._fake.set_signin_token(ledger["issue"]())
    arcpy.ImportToolbox(str(PYT), "wmx")
    result = arcpy.SynchronizeJobData_wmx(parent, "Parent", f"Ohio true {ohio} ''")
    assert result.getOutput(0) == "0", arcpy._fake.all_text()
    issued = ledger["issued"]
    assert len(issued) >= 2  # it ran out during the run and the renewed one was used
    assert all(ledger["served"].get(token, 0) > 0 for token in issued[:-1])
    assert arcpy._fake.off_thread_calls == []  # GetSigninToken only on the tool's thread
    assert_clean(arcpy._fake.all_text())


def test_wrong_tokens_in_exceptions_and_reports_are_redacted(guarded):
    parent, ohio, _ = guarded
    result = synchronize(
        parent.url, "Parent", f"Ohio true {ohio.url} ''", user=USER, token="wrong-" + TOKEN
    )
    assert result.status == -1
    assert "498" in result.error
    assert_clean(result.error, json.dumps(result.to_dict()), *result.summary_lines())
    # A token written into the URL is used, and never shown.
    with WMServerClient(parent.url + f"?token={TOKEN}", user=USER) as client:
        assert client.replication_info()["repository"] == "Parent"
        assert_clean(client.display_url, client.url, repr(client))


def test_toolbox_messages_never_show_the_token(arcpy, guarded, monkeypatch):
    parent, ohio, _ = guarded
    monkeypatch.setenv("WMSYNC_USER", USER)
    monkeypatch.setenv("WMSYNC_TOKEN", TOKEN)
    arcpy.ImportToolbox(str(PYT), "wmx")
    table = f"Ohio true {ohio.url}?token={TOKEN} '';Texas true {ohio.url}?token={TOKEN} ''"
    result = arcpy.SynchronizeJobData_wmx(parent.url, "Parent", table)
    assert result.getOutput(0) == "1"
    # The Last Synchronized output is a value that feeds the next run, not a message: it
    # keeps each row's URL as the user gave it.
    assert_clean(arcpy._fake.all_text())
    monkeypatch.setenv("WMSYNC_TOKEN", "wrong-" + TOKEN)
    with pytest.raises(arcpy.ExecuteError) as failed:
        arcpy.SynchronizeJobData_wmx(parent.url, "Parent", table)
    assert_clean(str(failed.value), arcpy._fake.all_text())


# -- the emulator -----------------------------------------------------------------------


def test_an_emulator_with_a_token_refuses_missing_and_wrong_tokens_as_arcgis(guarded):
    """As ArcGIS Server: 499 "Token Required" without a token, 498 "Invalid Token" with a
    wrong one."""
    parent = guarded[0]
    info = parent.url + "/replication/info"
    for headers, params, code, expected in [
        ({}, {}, 499, "Token Required"),
        ({"X-Esri-Authorization": "Bearer wrong-" + TOKEN}, {}, 498, "Invalid Token"),
        ({}, {"token": "wrong-" + TOKEN}, 498, "Invalid Token"),
    ]:
        answer = requests.get(
            info, params={"user": USER, "f": "json", **params}, headers=headers, timeout=10
        )
        body = answer.text
        assert json.loads(body)["error"]["code"] == code
        assert expected in body
        assert TOKEN not in body  # the wrong token is not echoed
    with (
        WMServerClient(parent.url, user=USER, token="wrong") as client,
        pytest.raises(AuthenticationError),
    ):
        client.replication_info()
    with WMServerClient(parent.url, user=USER, token=TOKEN) as client:
        assert client.replication_info()["repository"] == "Parent"


def test_the_emulator_binds_loopback_by_default(emulator):
    running = emulator("Solo")
    assert running.host == "127.0.0.1"
    assert running.url.startswith("http://127.0.0.1:")
    for function in (emulator_server.start_in_thread, emulator_server.serve):
        assert inspect.signature(function).parameters["host"].default == "127.0.0.1"
    args = cli.build_parser().parse_args(["serve", "--repository", "R", "--db", "r.sqlite"])
    assert args.host == "127.0.0.1"
