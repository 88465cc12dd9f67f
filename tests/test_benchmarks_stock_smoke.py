"""The stock benchmark's code works end to end at tiny sizes against true stock
emulators (no timing asserted: figures are written, never judged, in tests), and its
hook into ``python -m benchmarks`` picks the right scenarios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import stock

FIELDS = {
    "scenario",
    "jobs_per_repository",
    "changes",
    "children",
    "wall_s",
    "requests",
    "requests_per_job_per_scan",
    "client_peak_rss_mb",
    "elements_moved",
}


def test_tiny_stock_runs_are_measured_and_merged_keeping_other_scenarios(tmp_path: Path):
    records: list = []
    stock.run_clusters([4], 1, tmp_path, records)
    stock.run_scans([6], 1, tmp_path, records)
    by_name = {r["scenario"]: r for r in records}
    assert set(by_name) == {
        "stock_first_sync",
        "stock_no_change",
        "stock_incremental",
        "stock_scan",
    }
    for record in records:
        assert FIELDS <= set(record), record
        assert record["wall_s"] > 0 and record["requests"] > 0
        assert record["client_peak_rss_mb"] > 0
    assert by_name["stock_first_sync"]["elements_moved"] > 0
    assert by_name["stock_no_change"]["elements_moved"] == 0
    assert by_name["stock_no_change"]["state_store_mb"] > 0
    # Two jobs changed on one stock child reach the parent and the two other children.
    assert by_name["stock_incremental"]["changes"] == 2
    assert by_name["stock_incremental"]["elements_moved"] == 3 * 2
    # A scan costs four requests per job and a few for the configuration.
    scan = by_name["stock_scan"]
    assert 4 * 6 < scan["requests"] <= 4 * 6 + 10

    output = tmp_path / "latest.json"
    output.write_text(
        json.dumps({"scenarios": [{"scenario": "no_change"}], "targets": [{"target": "(c) other"}]})
    )
    stock.merge(output, records, {"mode": "test"})
    stock.merge(output, records, {"mode": "test"})  # again: replaced, not doubled
    document = json.loads(output.read_text())
    names = [r["scenario"] for r in document["scenarios"]]
    assert names.count("no_change") == 1 and names.count("stock_scan") == 1
    assert names.count("stock_no_change") == 1
    targets = [t["target"] for t in document["targets"]]
    assert targets[0] == "(c) other" and len(targets) == len(set(targets)) == 3
    assert all({"target", "value", "limit", "met"} <= set(t) for t in document["targets"][1:])


@pytest.mark.parametrize(
    "argv, others, runs_stock",
    [
        ([], [], True),
        (["--long"], ["--long"], True),
        (["--smoke"], ["--smoke"], False),
        (["--only", "stock"], None, True),
        (["--smoke", "--only=stock"], None, True),
        (["--only", "parallel", "--only", "stock"], ["--only", "parallel"], True),
        (["--only", "parallel"], ["--only", "parallel"], False),
    ],
)
def test_python_dash_m_benchmarks_runs_stock_when_asked(argv, others, runs_stock, monkeypatch):
    ran = []
    monkeypatch.setattr(stock, "main", lambda a=None: ran.append(a) or 0)
    assert stock.others_argv(argv) == others
    assert stock.after_others(argv) == 0
    assert bool(ran) == runs_stock
