"""``wmsync export`` / ``wmsync import`` as processes against emulators on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cluster import create_job, job_id_by_name, make_cluster

TOKEN = "s3cret-token-value"


def run_cli(*args: str, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def pair(emulator):
    cluster = make_cluster(emulator, "HQ", "Office")
    yield cluster
    cluster.close()


def test_export_then_import_both_ways(pair, tmp_path):
    hq, office = pair.parent, pair.children[0]
    create_job(pair.client("HQ"), "From HQ")
    join = tmp_path / "join.zip"
    done = run_cli(
        "export",
        "--url",
        hq.url,
        "--to",
        "Office",
        "--out",
        str(join),
        "--register-child",
        "--child-url",
        office.url,
        "--user",
        "tester",
    )
    assert done.returncode == 0, done.stderr
    assert "registered Office" in done.stdout and str(join) in done.stdout
    report = tmp_path / "import.json"
    done = run_cli(
        "import",
        "--url",
        office.url,
        "--file",
        str(join),
        "--user",
        "tester",
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    assert "joined the cluster of HQ" in done.stdout
    data = json.loads(report.read_text())
    assert data["joined"] and data["watermarksMoved"] and data["manifest"]["source"] == "HQ"
    assert job_id_by_name(pair.client("Office"), "From HQ")

    create_job(pair.client("Office"), "From the office")
    back = tmp_path / "back.zip"
    assert (
        run_cli(
            "export",
            "--url",
            office.url,
            "--to",
            "HQ",
            "--out",
            str(back),
            "-q",
            "--user",
            "tester",
        ).stdout
        == ""
    )
    done = run_cli("import", "--url", hq.url, "--file", str(back), "--user", "tester")
    assert done.returncode == 0, done.stderr
    assert job_id_by_name(pair.client("HQ"), "From the office") > 1_000_000
    again = run_cli("import", "--url", hq.url, "--file", str(back), "--user", "tester")
    assert again.returncode == 0 and "already imported" in again.stdout


def test_bad_input_is_one_line_and_exit_2(pair, tmp_path):
    hq, office = pair.parent, pair.children[0]
    missing = run_cli("import", "--url", office.url, "--file", str(tmp_path / "none.zip"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "is not a file" in missing.stderr

    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    done = run_cli("import", "--url", office.url, "--file", str(junk), "--user", "tester")
    assert done.returncode == 2 and done.stderr.startswith("wmsync: error: ")
    assert "damaged or truncated" in done.stderr and done.stdout == ""

    unknown = run_cli(
        "export",
        "--url",
        hq.url,
        "--to",
        "Nobody",
        "--out",
        str(tmp_path / "x.zip"),
        "--user",
        "tester",
    )
    assert unknown.returncode == 2 and "--register-child" in unknown.stderr
    assert not (tmp_path / "x.zip").exists()

    nowhere = run_cli(
        "export",
        "--url",
        hq.url,
        "--to",
        "Office",
        "--out",
        str(tmp_path / "no" / "such" / "x.zip"),
    )
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr

    usage = run_cli("export", "--url", hq.url)
    assert usage.returncode == 2 and "--to" in usage.stderr


def test_a_file_for_another_repository_is_refused_naming_both(pair, tmp_path):
    hq = pair.parent
    path = tmp_path / "j.zip"
    assert (
        run_cli(
            "export",
            "--url",
            hq.url,
            "--to",
            "Office",
            "--out",
            str(path),
            "--register-child",
            "--user",
            "tester",
        ).returncode
        == 0
    )
    done = run_cli("import", "--url", hq.url, "--file", str(path), "--user", "tester")
    assert done.returncode == 2
    assert "meant for Office, not for HQ" in done.stderr


def test_the_token_never_shows(emulator, tmp_path):
    hq = emulator("HQ", token=TOKEN)
    office = emulator("Office", token=TOKEN)
    path = tmp_path / "j.zip"
    log = tmp_path / "log.txt"
    done = run_cli(
        "export",
        "--url",
        hq.url,
        "--to",
        "Office",
        "--out",
        str(path),
        "--register-child",
        "--user",
        "tester",
        "--token",
        TOKEN,
        "-vv",
        "--log-file",
        str(log),
    )
    assert done.returncode == 0, done.stderr
    done2 = run_cli(
        "import",
        "--url",
        office.url,
        "--file",
        str(path),
        "--user",
        "tester",
        env={"WMSYNC_TOKEN": TOKEN},
    )
    assert done2.returncode == 0, done2.stderr
    refused = run_cli(
        "import", "--url", office.url + "?token=" + TOKEN, "--file", str(tmp_path / "none.zip")
    )
    for text in (
        done.stdout,
        done.stderr,
        done2.stdout,
        done2.stderr,
        refused.stderr,
        log.read_text(),
    ):
        assert TOKEN not in text
