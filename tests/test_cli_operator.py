"""The command line as an operator meets it (issue 15): Ctrl-C is a cancel, bad arguments
are refused before anything runs, -q/-v, --write-back, --credentials, the child file's
wording. Every test drives ``python -m wmsync`` as a real process against live
emulators on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import pytest
from cluster import create_job, generation, make_cluster

from wmsync.client import WMServerClient
from wmsync.emulator.faults import Fault

SECRET = "PLANTEDsecret0123456789"


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def command(*args: str) -> List[str]:
    return [sys.executable, "-m", "wmsync", *args]


def run_cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 90):
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def sync_args(cluster, *extra: str, table: Optional[str] = None) -> List[str]:
    return [
        "sync",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        cluster.parent_name,
        "--children",
        table if table is not None else cluster.table(),
        "--user",
        "tester",
        *extra,
    ]


def generations(cluster) -> List[int]:
    return [generation(cluster.client(name)) for name in cluster.names]


# --------------------------------------------------------------------------- 1. cancel


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def stalled_run(cluster, faults: List[Fault], *extra: str) -> subprocess.Popen:
    """Start a sync whose pushes wait in *faults* (latency on the children's import,
    which only the push phase uses), and return once every fault holds a request."""
    for child, fault in zip(cluster.children, faults):
        child.app.faults.append(fault)
    process = subprocess.Popen(
        command(*sync_args(cluster, *extra)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: all(f.hits >= 1 for f in faults) or process.poll() is not None)
    except AssertionError:
        process.kill()
        raise
    assert process.poll() is None, process.communicate()
    return process


def test_ctrl_c_stops_at_the_next_safe_point_reports_and_exits_2(three, tmp_path):
    create_job(three.client("Ohio"), "from Ohio")
    create_job(three.client("AZ"), "from AZ")
    ohio = Fault("replication/import", "latency", seconds=60, times=1)
    report = tmp_path / "report.json"
    process = stalled_run(three, [ohio], "--max-workers", "1", "--report", str(report))
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)  # the run goes on: the engine sees the cancel at its next poll
        ohio.release()
        out, err = process.communicate(timeout=60)
    finally:
        ohio.release()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, out + err
    assert "Traceback" not in err and "cancelling at the next safe point" in err
    assert "Ohio: synchronized" in out and "AZ: FAILED" in out and "cancelled" in out
    data = json.loads(report.read_text())
    assert data["cancelled"] is True
    assert {c["name"]: c["state"] for c in data["children"]} == {
        "Ohio": "synchronized",
        "AZ": "failed",
    }
    # The next run finishes the work.
    again = run_cli(*sync_args(three))
    assert again.returncode == 0, again.stdout + again.stderr


def test_sigterm_after_every_child_finished_exits_0_with_a_cancelled_report(three, tmp_path):
    create_job(three.client("Ohio"), "from Ohio")
    create_job(three.client("AZ"), "from AZ")
    faults = [Fault("replication/import", "latency", seconds=60, times=1) for _ in range(2)]
    report = tmp_path / "report.json"
    process = stalled_run(three, faults, "--report", str(report))
    try:
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        for fault in faults:
            fault.release()
        out, err = process.communicate(timeout=60)
    finally:
        for fault in faults:
            fault.release()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert out.count(": synchronized") == 2
    data = json.loads(report.read_text())
    assert data["cancelled"] is True and data["status"] == 0
    assert [c["state"] for c in data["children"]] == ["synchronized", "synchronized"]


def test_a_second_ctrl_c_aborts_at_once(three):
    create_job(three.client("AZ"), "from AZ")
    ohio = Fault("replication/import", "latency", seconds=60, times=1)
    create_job(three.client("Ohio"), "from Ohio")
    process = stalled_run(three, [ohio])
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert time.monotonic() - started < 10
    finally:
        ohio.release()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, out + err
    assert "aborted" in err and "Traceback" not in err


# --------------------------------------------------------------------------- 2. arguments


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--max-workers", "-3"], "--max-workers"),
        (["--report", "{tmp}/no/such/folder/r.json"], "does not exist"),
        (["--report", "{tmp}/a-file/r.json"], "does not exist"),
        (["--report", "{tmp}"], "is a folder"),
        (["--token-url", "http://127.0.0.1:9/sharing/rest/generateToken"], "WMSYNC_PASSWORD"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(three, tmp_path, extra, fragment):
    (tmp_path / "a-file").write_text("not a folder")
    create_job(three.client("Ohio"), "pending")
    before = generations(three)
    done = run_cli(*sync_args(three, *[e.format(tmp=tmp_path) for e in extra]))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert generations(three) == before


def test_a_row_naming_the_parent_refuses_the_table(three):
    create_job(three.client("Ohio"), "pending")
    before = generations(three)
    table = three.table() + f";Copy true {three.parent.url}/"
    done = run_cli(*sync_args(three, table=table))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Row 3:" in done.stdout and "parent repository's URL" in done.stdout
    assert "status -1" in done.stdout
    assert generations(three) == before
    by_name = run_cli(
        *sync_args(
            three,
            table=three.table() + ";parent true http://127.0.0.1:9/arcgis/rest/services/X/WMServer",
        )
    )
    assert by_name.returncode == 2 and "parent repository itself" in by_name.stdout
    assert generations(three) == before


# --------------------------------------------------------------------------- 4. loudness


def test_quiet_prints_nothing_on_success_but_warnings_still_reach_stderr(three):
    done = run_cli(*sync_args(three, "-q", table=three.table(connected={"AZ": "false"})))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "AZ skipped" in done.stderr and "WARNING" in done.stderr
    assert "Ohio" not in done.stderr


def test_a_normal_run_prints_each_summary_line_once(three):
    create_job(three.client("Ohio"), "from Ohio")
    done = run_cli(*sync_args(three))
    assert done.returncode == 0, done.stderr
    both = done.stdout + done.stderr
    summary = [line for line in done.stdout.splitlines() if line]
    assert summary[0].startswith("Ohio: synchronized") and summary[-1].startswith(
        "Last Synchronized: "
    )
    for line in summary:
        assert both.count(line) == 1, line
    assert done.stderr == ""


def test_verbosity_v_is_info_and_vv_debug(three):
    once = run_cli(*sync_args(three, "-v"))
    assert once.returncode == 0
    assert " INFO " in once.stderr and " DEBUG " not in once.stderr
    twice = run_cli(*sync_args(three, "-vv"))
    assert twice.returncode == 0
    assert " DEBUG " in twice.stderr


# --------------------------------------------------------------------------- 5. write back


def test_write_back_rewrites_the_children_file_atomically_for_the_next_run(three, tmp_path):
    ohio, az = three.children
    folder = tmp_path / "cron"
    folder.mkdir()
    rows = folder / "children.txt"
    rows.write_text(
        "# offices synchronized nightly by cron\n"
        f"Ohio true {ohio.url} #\n"
        "\n"
        "  # Arizona joined in 2026\n"
        f"AZ true {az.url} 2011-08-08 12:00\n",
        encoding="utf-8",
    )
    inode = os.stat(rows).st_ino
    refused = run_cli(*sync_args(three, "--write-back"))
    assert refused.returncode == 2 and "--children-file" in refused.stderr
    args = [
        "sync",
        "--parent-url",
        three.parent.url,
        "--parent-name",
        "Parent",
        "--children-file",
        str(rows),
        "--user",
        "tester",
        "--write-back",
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = rows.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# offices synchronized nightly by cron"
    assert lines[2] == "" and lines[3] == "  # Arizona joined in 2026"
    assert lines[1].startswith(f"Ohio true {ohio.url} 20")  # never synced: default style
    assert lines[4].startswith(f"AZ true {az.url} 20") and "2011" not in lines[4]
    assert os.stat(rows).st_ino != inode  # replaced, not written in place
    assert sorted(p.name for p in folder.iterdir()) == ["children.txt"]
    # The next run reads the times back: they match the servers' record, no warning.
    create_job(three.client("AZ"), "after the first run")
    second = run_cli(*args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "row time" not in second.stderr and "WARNING" not in second.stderr
    assert "AZ: synchronized; sent" in second.stdout and "AZ: synchronized; sent 0" not in (
        second.stdout
    )


# --------------------------------------------------------------------------- 6. row time


def test_a_static_table_older_than_the_record_is_info_not_a_warning(three):
    esri_style = three.table("2011-08-08 12:00")
    assert run_cli(*sync_args(three)).returncode == 0  # the servers now hold a record
    static = run_cli(*sync_args(three, "-v", table=esri_style))
    assert static.returncode == 0
    assert "WARNING" not in static.stderr
    assert "INFO row time ignored; Ohio last synchronized at" in static.stderr
    claims = run_cli(*sync_args(three, table=three.table("2100-01-01 00:00")))
    assert claims.returncode == 0
    assert "WARNING row time ignored; Ohio last synchronized" in claims.stderr


# --------------------------------------------------------------------------- 7. dates


def test_an_unreadable_date_refuses_the_table_and_changes_nothing(three):
    table = three.table().replace("''", "31/02/2020 10:00", 1)
    before = generations(three)
    done = run_cli(*sync_args(three, table=table))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Row 1: last_sync_time '31/02/2020 10:00'" in done.stdout + done.stderr
    assert ": synchronized" not in done.stdout
    assert generations(three) == before


# --------------------------------------------------------------------------- 8. credentials


@pytest.fixture
def token_service():
    """A tiny ``generateToken`` endpoint handing AZ's token to the right password."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    def app(environ: Any, start_response: Any) -> Any:
        form = Request(environ).form
        if form.get("username") == "azsync" and form.get("password") == "az-" + SECRET:
            payload: Dict[str, Any] = {"token": "AZ" + SECRET, "expires": 9999999999999}
        else:
            payload = {"error": {"code": 400, "message": "Invalid username or password"}}
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


def test_the_insecure_warning_is_printed_once(three, token_service):
    done = run_cli(
        *sync_args(three, "--insecure", "--token-url", token_service, "--username", "azsync"),
        env={"WMSYNC_PASSWORD": "az-" + SECRET},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("TLS certificate checks are OFF") == 1


def test_credentials_give_each_office_its_own_token(emulator, tmp_path, token_service):
    parent = emulator("Parent", token="HQ" + SECRET)
    ohio = emulator("Ohio", token="OH" + SECRET)
    az = emulator("AZ", token="AZ" + SECRET)
    with WMServerClient(ohio.url, user="tester", token="OH" + SECRET) as client:
        create_job(client, "from Ohio")
    (tmp_path / "ohio.token").write_text("OH" + SECRET + "\n")
    creds = tmp_path / "credentials.json"
    ohio_root = ohio.url.split("/arcgis/")[0]
    creds.write_text(
        json.dumps(
            {
                "servers": [
                    {"url": ohio_root + "/arcgis", "token_file": "ohio.token"},
                    {
                        "url": ohio_root + "/arcgis/rest/services/Elsewhere",
                        "token_env": "NOPE_TOKEN",
                    },
                    {
                        "url": az.url.split("/rest/")[0],
                        "token_url": token_service,
                        "username": "azsync",
                        "password_env": "AZ_PASSWORD",
                    },
                ]
            },
            indent=2,
        )
    )
    table = f"Ohio true {ohio.url};AZ true {az.url}"
    report = tmp_path / "r.json"
    done = run_cli(
        "sync",
        "--parent-url",
        parent.url,
        "--parent-name",
        "Parent",
        "--children",
        table,
        "--user",
        "tester",
        "--credentials",
        str(creds),
        "--report",
        str(report),
        "-vv",
        env={"WMSYNC_TOKEN": "HQ" + SECRET, "AZ_PASSWORD": "az-" + SECRET, "NOPE_TOKEN": "unused"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": synchronized") == 2
    for text in (done.stdout, done.stderr, report.read_text()):
        assert SECRET not in text


def test_a_credentials_file_holding_a_secret_inline_is_refused(three, tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(
        '{\n  "servers": [\n    {"url": "http://127.0.0.1/arcgis",\n'
        '     "token_url": "http://127.0.0.1/generateToken",\n'
        '     "username": "u",\n'
        f'     "password": "{SECRET}"}}\n  ]\n}}\n'
    )
    before = generations(three)
    done = run_cli(*sync_args(three, "--credentials", str(creds)))
    assert done.returncode == 2
    assert (
        "line 6" in done.stderr and "'password'" in done.stderr and "password_env" in (done.stderr)
    )
    assert SECRET not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert generations(three) == before


def test_a_secret_the_credentials_file_refers_to_must_exist_before_the_run(three, tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(
        json.dumps({"servers": [{"url": "http://127.0.0.1/arcgis", "token_env": "OHIO_TOKEN"}]})
    )
    before = generations(three)
    done = run_cli(*sync_args(three, "--credentials", str(creds)))
    assert done.returncode == 2
    assert "server 1" in done.stderr and "OHIO_TOKEN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert generations(three) == before


def test_the_longest_prefix_wins_on_whole_path_segments(tmp_path, monkeypatch):
    from wmsync.auth import as_token_source
    from wmsync.credentials import load_credentials

    monkeypatch.setenv("A_TOKEN", "a")
    monkeypatch.setenv("B_TOKEN", "b")
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "servers": [
                    {"url": "https://HQ.example.com/arcgis", "token_env": "A_TOKEN"},
                    {
                        "url": "https://hq.example.com/arcgis/rest/services/Ohio/",
                        "token_env": "B_TOKEN",
                    },
                ]
            }
        )
    )
    creds = load_credentials(str(path))

    def token(url: str) -> Optional[str]:
        source = as_token_source(creds.token_for(url, "default"))
        return source.get() if source else None

    assert token("https://hq.example.com/arcgis/rest/services/Ohio/WMServer") == "b"
    assert token("https://hq.example.com/arcgis/rest/services/OhioX/WMServer") == "a"
    assert token("https://hq.example.com:443/ARCGIS/rest/services/AZ/WMServer") == "a"
    assert token("https://hq.example.com/arcgis2/rest/services/AZ/WMServer") == "default"
    assert token("https://hq.example.com.evil.net/arcgis/x") == "default"
    assert token("http://hq.example.com/arcgis/x") == "default"  # another scheme
    assert creds.secrets == ["a", "b"]


# --------------------------------------------------------------------------- 9. wording


def test_a_hash_line_in_a_children_file_is_a_comment(three, tmp_path):
    rows = tmp_path / "children.txt"
    rows.write_text(
        "# nightly\n#Gone true http://127.0.0.1:9/x/WMServer\n"
        + three.table().replace(";", "\n")
        + "\n",
        encoding="utf-8",
    )
    done = run_cli(
        "sync",
        "--parent-url",
        three.parent.url,
        "--parent-name",
        "Parent",
        "--children-file",
        str(rows),
        "--user",
        "tester",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": synchronized") == 2


def test_an_unquoted_name_with_a_space_gets_a_hint(three):
    ohio = three.children[0]
    done = run_cli(*sync_args(three, table=f"New Ohio true {ohio.url}"))
    assert done.returncode == 2
    assert "a name with spaces must be in single quotes: 'New Ohio'" in done.stdout
