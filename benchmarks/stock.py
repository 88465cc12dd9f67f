"""The stock scenario (issue 13 item 8): a parent with the replication extensions and
three children that are TRUE stock servers (``wmsync serve --stock``: only Esri's
documented operations), synchronized through stock replicas and a state store.

``python -m benchmarks.stock [--smoke] [--output FILE]`` runs it alone and merges its
``stock_*`` records and targets into the results file (``python -m benchmarks`` runs it
as scenario ``stock``). For each size (10^3 and 10^4 jobs; smoke: a few dozen):

- the parent is bulk-loaded (:mod:`wmsync.repository.bulk`) before its emulator starts:
  jobs, a tenth of them with notes, a hold on every 50th, a comment on every 20th;
  the children start empty;
- ``stock_first_sync``: the first run, which writes every job to the three stock
  children through ``jobs/create`` and friends (not a target: shown for scale);
- ``stock_scan``: one scan of one stock child alone (:func:`wmsync.stock.scan.scan`);
- ``stock_no_change``: a run with nothing to move (three scans), fastest of the repeats;
- ``stock_incremental``: 100 jobs changed on one stock child, then a run.

Every run is a fresh client process (:mod:`benchmarks.stock_run`) so that its peak RSS
is the client's alone; the emulators run in processes of their own on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from wmsync.repository.store import Store

from .cluster import ROOT, Cluster, Emulator

RESULTS = Path(__file__).resolve().parent / "results"
CHILDREN = 3
CHANGES = 100
SIZES = {"default": [1_000, 10_000], "smoke": [20, 40]}
REPEATS = {"default": 2, "smoke": 1}
RUN_TIMEOUT = 3600.0

# Targets on this machine's loopback (issue 13 item 8).
NO_CHANGE_LIMIT_S = 60.0
REQUESTS_PER_JOB_LIMIT = 4.0
RSS_RATIO_LIMIT = 1.3


class StockEmulator(Emulator):
    """``python -m wmsync.emulator --stock``: a true stock server on loopback."""

    def __init__(self, name: str, db_path: Path, log_path: Path) -> None:
        self.name = name
        self.db_path = db_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wmsync.emulator", "--repository", name, "--stock",
             "--db", str(db_path), "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=self._log, cwd=str(ROOT),
        )
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise


class StockCluster(Cluster):
    """An extension parent and stock children."""

    def start(self) -> None:
        for name, store in self.stores.items():
            kind = Emulator if name == self.parent_name else StockEmulator
            self.emulators[name] = kind(name, store.path, self.workdir / f"{name}.log")

    @property
    def stock_urls(self) -> List[str]:
        return [self.emulators[name].url for name in self.child_names]


def load(store: Store, jobs: int) -> None:
    """*jobs* jobs in bulk, a tenth with notes; holds and comments on some of them."""
    with_notes = jobs // 10
    ids = store.bulk_insert_jobs(jobs - with_notes)
    ids += store.bulk_insert_jobs(with_notes, fields={"notes": "bulk-loaded notes"})
    with store.atomic() as session:
        for job_id in ids:
            if job_id % 50 == 0 or job_id % 20 == 0:
                job = session.by_id("Job", job_id)
                assert job is not None
                if job_id % 50 == 0:
                    session.edit("Hold", None, {"job": job.guid, "type": "1",
                                                "heldBy": "bench", "holdDate": "0",
                                                "holdComments": f"hold on {job_id}"})
                if job_id % 20 == 0:
                    session.add_activity(job.guid, 7, "bench", f"comment on {job_id}")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _subprocess(module: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)], capture_output=True,
        timeout=RUN_TIMEOUT, cwd=str(ROOT), env=_env(), check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed: {done.stderr.decode()[-2000:]}")
    figures: Dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def sync(cluster: StockCluster, state_path: Path) -> Dict[str, Any]:
    """One synchronization in a fresh client process; its figures."""
    figures = _subprocess("benchmarks.stock_run", {
        "parent_url": cluster.parent_url,
        "parent_name": cluster.parent_name,
        "children": cluster.table(),
        "stock_urls": cluster.stock_urls,
        "state_path": str(state_path),
    })
    if figures["status"] != 0:
        raise RuntimeError(f"stock synchronization failed: {figures}")
    figures["bytes_moved"] = figures["bytes_sent"] + figures["bytes_received"]
    return figures


def scan_alone(url: str) -> Dict[str, Any]:
    """One scan of one stock server in a fresh process: wall time, requests, RSS."""
    return _subprocess("benchmarks.stock_scan", {"url": url})


def record(name: str, jobs: int, changes: int, figures: Dict[str, Any],
           **extra: Any) -> Dict[str, Any]:
    out = {
        "scenario": name,
        "jobs_per_repository": jobs,
        "changes": changes,
        "children": CHILDREN,
        "stock_children": CHILDREN,
        "wall_s": figures["wall_s"],
        "requests": figures["requests"],
        "requests_per_job_per_scan": round(
            figures["requests"] / (jobs * figures.get("scans", CHILDREN)), 3),
        "bytes_moved": figures.get("bytes_moved", figures.get("bytes_received", 0)),
        "client_peak_rss_mb": figures["client_peak_rss_mb"],
        "elements_moved": figures.get("sent", 0) + figures.get("received", 0),
    }
    if "state_bytes" in figures:
        out["state_store_mb"] = round(figures["state_bytes"] / 1e6, 2)
    out.update(extra)
    return out


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] stock: {text}", file=sys.stderr, flush=True)


def run_stock(sizes: List[int], repeats: int, workdir: Path,
              out: List[Dict[str, Any]]) -> None:
    """Every stock measurement, appended to *out*."""
    for jobs in sizes:
        with StockCluster(workdir, f"stock-{jobs}", CHILDREN) as cluster:
            log(f"{jobs} jobs: bulk loading the parent")
            load(cluster.stores[cluster.parent_name], jobs)
            cluster.start()
            state_path = cluster.workdir / "state" / "state.sqlite"
            log(f"{jobs} jobs: first run, every job written to {CHILDREN} stock children")
            first = sync(cluster, state_path)
            out.append(record("stock_first_sync", jobs, jobs, first,
                              note="writes every job to the stock children over REST"))
            log(f"{jobs} jobs: first run {first['wall_s']} s, {first['requests']} requests")
            scans = [scan_alone(cluster.stock_urls[0]) for _ in range(repeats)]
            best_scan = min(scans, key=lambda s: s["wall_s"])
            out.append(record("stock_scan", jobs, 0, dict(best_scan, scans=1),
                              all_wall_s=[s["wall_s"] for s in scans],
                              note="one scan of one stock repository"))
            quiet = [sync(cluster, state_path) for _ in range(repeats)]
            for figures in quiet:
                if figures["sent"] + figures["received"]:
                    raise RuntimeError(f"a no-change run moved something: {figures}")
            best = min(quiet, key=lambda f: f["wall_s"])
            log(f"{jobs} jobs: no-change runs {[f['wall_s'] for f in quiet]} s")
            out.append(record("stock_no_change", jobs, 0, best,
                              all_wall_s=[f["wall_s"] for f in quiet],
                              note="nothing to move: one scan of each stock child"))
            child = cluster.child_names[0]
            changes = min(CHANGES, jobs // 2)
            ids = cluster.job_ids(child, changes)
            cluster.stores[child].bulk_update_jobs(ids, {"description": f"changed {jobs}"})
            incremental = sync(cluster, state_path)
            log(f"{jobs} jobs: {changes} changes {incremental['wall_s']} s, moved "
                f"{incremental['sent'] + incremental['received']}")
            out.append(record("stock_incremental", jobs, changes, incremental,
                              note=f"{changes} jobs changed on one stock child"))


def _find(records: List[Dict[str, Any]], scenario: str, jobs: int) -> Optional[Dict[str, Any]]:
    for item in records:
        if item["scenario"] == scenario and item["jobs_per_repository"] == jobs:
            return item
    return None


def targets(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The stock targets from this run's records (absent when a scenario did not run)."""
    sizes = sorted({r["jobs_per_repository"] for r in records
                    if r["scenario"] == "stock_no_change"})
    if not sizes:
        return []
    small, large = sizes[0], sizes[-1]
    found: List[Dict[str, Any]] = []

    def target(name: str, value: float, limit: float) -> None:
        found.append({"target": name, "value": value, "limit": limit, "met": value <= limit})

    quiet_l, quiet_s = _find(records, "stock_no_change", large), _find(
        records, "stock_no_change", small)
    scan_l = _find(records, "stock_scan", large)
    assert quiet_l is not None and quiet_s is not None
    target(f"stock: no-change run of 3 stock children of {large} jobs, s",
           quiet_l["wall_s"], NO_CHANGE_LIMIT_S)
    if scan_l is not None:
        target(f"stock: requests per job per scan at {large} jobs",
               scan_l["requests_per_job_per_scan"], REQUESTS_PER_JOB_LIMIT)
    if large != small:
        target(f"stock: client peak RSS ratio {large}/{small} (no-change run)",
               round(quiet_l["client_peak_rss_mb"] / quiet_s["client_peak_rss_mb"], 3),
               RSS_RATIO_LIMIT)
    return found


def merge(output: Path, records: List[Dict[str, Any]], meta: Dict[str, Any]) -> None:
    """Replace the ``stock_*`` records and stock targets of *output*, keeping the rest."""
    document: Dict[str, Any] = {}
    if output.exists():
        document = json.loads(output.read_text(encoding="utf-8"))
    kept = [r for r in document.get("scenarios", []) if not r["scenario"].startswith("stock_")]
    document["scenarios"] = kept + records
    old = [t for t in document.get("targets", []) if not t["target"].startswith("stock:")]
    document["targets"] = old + targets(records)
    document["stock_meta"] = meta
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stock",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): a check")
    parser.add_argument("--output", default=None, help="JSON file to merge into (default: "
                        "benchmarks/results/latest.json; smoke: results/smoke.json)")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "default"
    output = Path(args.output) if args.output else RESULTS / (
        "smoke.json" if args.smoke else "latest.json")
    started = time.perf_counter()
    records: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wmsync-bench-stock-") as tmp:
        run_stock(SIZES[mode], REPEATS[mode], Path(tmp), records)
    merge(output, records, {"mode": mode, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "runtime_s": round(time.perf_counter() - started, 1)})
    for item in targets(records):
        log(f"{'MET ' if item['met'] else 'MISS'} {item['target']}: {item['value']} "
            f"(limit {item['limit']})")
    log(f"merged into {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
