"""The command line, in-process for behaviour and as a real process for the entry points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from cluster import create_job, generation, make_cluster

from wmsync import cli

SUBCOMMANDS = ["sync", "plan", "serve", "demo", "install-toolbox"]
PLANTED = "PLANTEDsecretTOKEN0123456789"


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def run_cli(*args: str, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_python_dash_m_help():
    done = run_cli("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: wmsync {name}" in out
    assert len(out.splitlines()) > 3


def sync_args(cluster, *extra):
    return [
        "sync",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        cluster.parent_name,
        "--children",
        cluster.table(),
        "--user",
        "tester",
        *extra,
    ]


def test_sync_as_a_process_writes_the_report_and_exits_0(three, tmp_path):
    create_job(three.client("Ohio"), "from the CLI")
    report = tmp_path / "report.json"
    done = run_cli(*sync_args(three, "--report", str(report)))
    assert done.returncode == 0, done.stderr
    assert "Ohio: synchronized" in done.stdout
    assert "status 0" in done.stdout
    data = json.loads(report.read_text())
    assert data["status"] == 0
    assert {c["name"]: c["state"] for c in data["children"]} == {
        "Ohio": "synchronized",
        "AZ": "synchronized",
    }
    assert data["started"].endswith("Z") and data["finished"].endswith("Z")
    ohio = data["children"][0]
    assert set(ohio) >= {
        "name",
        "url",
        "state",
        "sent",
        "received",
        "conflicts",
        "renumbered",
        "error",
        "last_sync_time",
    }
    assert ohio["sent"] > 0


def test_some_children_failed_exits_1(three, capsys):
    table = three.table() + ";Gone true http://127.0.0.1:9/arcgis/rest/services/Gone/WMServer"
    code = cli.main(
        [
            "sync",
            "--parent-url",
            three.parent.url,
            "--parent-name",
            "Parent",
            "--children",
            table,
            "--user",
            "tester",
            "--timeout",
            "2",
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "Gone: FAILED" in out and "status 1" in out


@pytest.mark.parametrize("problem", ["wrong parent", "bad table"])
def test_refused_runs_exit_2_and_change_nothing(three, problem, capsys):
    before = generation(three.client("Ohio"))
    name, table = "Parent", three.table()
    if problem == "wrong parent":
        name = "Nope"
    else:
        table = "Ohio maybe notaurl 99/99/2020"
    code = cli.main(
        [
            "sync",
            "--parent-url",
            three.parent.url,
            "--parent-name",
            name,
            "--children",
            table,
            "--user",
            "tester",
        ]
    )
    assert code == 2
    assert "status -1" in capsys.readouterr().out
    assert generation(three.client("Ohio")) == before


def test_children_file_one_row_per_line(three, tmp_path, capsys):
    rows = tmp_path / "children.txt"
    rows.write_text(three.table().replace(";", "\n") + "\n", encoding="utf-8")
    code = cli.main(
        [
            "sync",
            "--parent-url",
            three.parent.url,
            "--parent-name",
            "Parent",
            "--children-file",
            str(rows),
            "--user",
            "tester",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.count(": synchronized") == 2


def test_dry_run_changes_nothing(three, capsys):
    create_job(three.client("AZ"), "pending")
    before = [generation(three.client(n)) for n in three.names]
    code = cli.main(sync_args(three, "--dry-run"))
    assert code == 0
    out = capsys.readouterr().out
    assert "AZ: full exchange" in out and "nothing changed" in out
    assert [generation(three.client(n)) for n in three.names] == before


def test_a_token_never_appears_in_output_report_or_log(three, tmp_path):
    report, log_file = tmp_path / "r.json", tmp_path / "sync.log"
    table = three.table() + ";Gone true http://127.0.0.1:9/arcgis/rest/services/Gone/WMServer"
    done = run_cli(
        "sync",
        "--parent-url",
        three.parent.url + f"?token={PLANTED}",
        "--parent-name",
        "Parent",
        "--children",
        table,
        "--user",
        "tester",
        "--report",
        str(report),
        "--log-file",
        str(log_file),
        "-vv",
        env={"WMSYNC_TOKEN": PLANTED},
    )
    assert done.returncode == 1
    for text in (done.stdout, done.stderr, report.read_text(), log_file.read_text()):
        assert PLANTED not in text
    assert "Gone" in log_file.read_text()


def test_serve_prints_its_url_first_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wmsync",
            "serve",
            "--repository",
            "Solo",
            "--db",
            str(tmp_path / "solo.sqlite"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline().strip()
        assert first.startswith("http://127.0.0.1:")
        assert first.endswith("/arcgis/rest/services/Solo/WMServer")
        from wmsync.client import WMServerClient

        with WMServerClient(first, user="tester") as client:
            assert client.replication_info()["repository"] == "Solo"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_demo_converges():
    done = run_cli("demo", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: all three repositories hold the same" in done.stdout


def test_a_failing_token_service_is_logged_to_the_log_file(three, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WMSYNC_PASSWORD", PLANTED)
    log_file = tmp_path / "sync.log"
    code = cli.main(
        sync_args(
            three,
            "--token-url",
            "http://127.0.0.1:9/sharing/rest/generateToken",
            "--username",
            "admin",
            "--log-file",
            str(log_file),
            "-vv",
        )
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "token service" in err
    logged = log_file.read_text(encoding="utf-8")
    assert "token service" in logged
    assert PLANTED not in logged + err


def test_main_in_process_leaves_no_logging_behind(three, capsys):
    import logging

    assert cli.main(sync_args(three, "-vv")) == 0
    handlers = logging.getLogger("wmsync").handlers
    assert [type(h).__name__ for h in handlers] == ["NullHandler"]
