"""The long reliability run: ``python -m benchmarks.reliability [--workers N] ...``.

The convergence property (``tests/test_reliability_convergence.py``) is CPU-bound, and
one Python process uses one core. This runs it in long mode in N worker processes at
once, each with its own random seeds and its share of the examples, then adds up their
tallies into one report, ``benchmarks/results/reliability.json``:

    python -m benchmarks.reliability --workers 3 --examples 10000

``--seconds S`` stops each worker after the round of 100 that passes S seconds.
``--merge FILE...`` only adds up reports that workers already wrote (when they were
started by hand with ``WMSYNC_LONG=1 WMSYNC_RELIABILITY_JSON=FILE``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
TEST = (
    "tests/test_reliability_convergence.py"
    "::test_random_clusters_converge_under_faults_with_nothing_lost"
)
RESULTS = ROOT / "benchmarks" / "results"
# Tallies that are counts and add up across workers; "seconds" is each worker's own.
NOT_SUMMED = {"test", "command", "passed", "long_mode", "examples_asked", "seconds"}


def merge(reports: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One report out of the workers' reports: counts added, passed only if all passed."""
    totals: Dict[str, int] = {}
    for report in reports:
        for key, value in report.items():
            if key not in NOT_SUMMED and isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    return {
        "test": TEST,
        "date": datetime.date.today().isoformat(),
        "workers": len(reports),
        "passed": bool(reports) and all(r.get("passed") is True for r in reports),
        "wall_seconds": max((r.get("seconds", 0.0) for r in reports), default=0.0),
        **dict(sorted(totals.items())),
        "per_worker": list(reports),
    }


def run_workers(
    workers: int, examples: int, seconds: float, folder: Path = RESULTS
) -> List[Dict[str, Any]]:
    """Start the workers, wait for all of them, and read back their reports.

    Each worker writes its report and its pytest output to ``folder``.
    """
    share = math.ceil(examples / workers)
    procs = []
    for index in range(workers):
        path = folder / f"reliability-worker-{index + 1}.json"
        path.unlink(missing_ok=True)
        env = dict(
            os.environ,
            WMSYNC_LONG="1",
            WMSYNC_EXAMPLES=str(share),
            WMSYNC_RELIABILITY_JSON=str(path),
        )
        if seconds != math.inf:
            env["WMSYNC_LONG_SECONDS"] = str(seconds)
        log = open(folder / f"reliability-worker-{index + 1}.log", "w")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
        procs.append(
            (
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                path,
                log,
            )
        )
    reports = []
    for proc, path, log in procs:
        code = proc.wait()
        log.close()
        report = json.loads(path.read_text()) if path.exists() else {"passed": False}
        if code != 0:  # a failed example, or the worker died: never reported as passed
            report["passed"] = False
        report["exit_code"] = code
        reports.append(report)
    return reports


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--examples", type=int, default=10_000, help="in all workers together")
    parser.add_argument("--seconds", type=float, default=math.inf, help="time budget per worker")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="add up existing worker reports instead of running",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "reliability.json")
    args = parser.parse_args(list(argv) or None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        reports = [json.loads(path.read_text()) for path in args.merge]
    else:
        started = time.monotonic()
        reports = run_workers(args.workers, args.examples, args.seconds, args.out.parent)
        print(f"{args.workers} workers done in {time.monotonic() - started:.0f} s")
    report = merge(reports)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report.get('examples', 0)} examples, "
        f"passed: {report['passed']}, lost: {report.get('changes_lost')}, "
        f"duplicates: {report.get('duplicates')}, "
        f"resurrected deletes: {report.get('resurrected_deletes')}; "
        f"restores: {report.get('restores_offline', 0) + report.get('restores_in_place', 0)}, "
        f"rebuilds: {report.get('rebuilds')} -> {args.out}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
