"""The long-run launcher (``python -m benchmarks.reliability``): worker reports add up
into one, and a failed or missing worker is never reported as passed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import reliability

ROOT = Path(__file__).resolve().parent.parent


def worker(passed: bool = True, **counts: int):
    return {
        "test": "t",
        "passed": passed,
        "long_mode": True,
        "examples_asked": 5000,
        "seconds": 100.0,
        **counts,
    }


def test_merge_adds_counts_but_not_seconds_or_the_asked_count():
    report = reliability.merge(
        [
            worker(examples=300, faults_injected=40, changes_lost=0, duplicates=0),
            worker(examples=200, faults_injected=2, changes_lost=0, duplicates=0),
        ]
    )
    assert report["passed"] is True
    assert report["workers"] == 2
    assert report["examples"] == 500 and report["faults_injected"] == 42
    assert report["wall_seconds"] == 100.0
    assert "examples_asked" not in report and "seconds" not in report
    assert len(report["per_worker"]) == 2


def test_merge_fails_if_any_worker_failed_or_there_were_none():
    assert reliability.merge([worker(), worker(passed=False)])["passed"] is False
    assert reliability.merge([worker(), {"examples": 3}])["passed"] is False
    assert reliability.merge([])["passed"] is False


def test_a_worker_that_fails_to_run_makes_the_run_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(reliability, "TEST", "tests/no_such_file.py::test_nothing")
    reports = reliability.run_workers(1, 1, float("inf"), tmp_path)
    assert reports[0]["passed"] is False and reports[0]["exit_code"] != 0


def test_two_workers_run_one_example_each_and_add_up(tmp_path):
    workers = 2
    out = tmp_path / "long.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.reliability",
            "--workers",
            str(workers),
            "--examples",
            str(workers),
            "--out",
            str(out),
        ],
        cwd=str(ROOT),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["workers"] == workers
    assert report["examples"] == workers
    for key in ("examples", "sync_runs", "faults_injected", "edits"):
        assert report.get(key, 0) == sum(w.get(key, 0) for w in report["per_worker"])
    assert report["changes_lost"] == 0 and report["duplicates"] == 0
