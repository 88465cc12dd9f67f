"""The stock scenario (issue 13 item 8): a parent with the replication extensions and
three children that are TRUE stock servers (``wmsync serve --stock``: only Esri's
documented operations), synchronized through stock replicas and a state store; and the
scan of one bulk-loaded stock server alone.

``python -m benchmarks.stock [--smoke] [--output FILE]`` runs it alone and merges its
``stock_*`` records and targets into the results file; ``python -m benchmarks`` runs it
after the other scenarios (``--only stock``: alone; not in ``--smoke`` mode unless
asked for with ``--only stock``). For each size (10^3 and 10^4 jobs; smoke: a few dozen):

- the parent is bulk-loaded (:mod:`wmsync.repository.bulk`) before its emulator starts:
  jobs, a tenth of them with notes, a hold on every 50th, a comment on every 20th;
  the children start empty (only 10^3 jobs by default: that first run
  costs about ten requests per job and child);
- ``stock_first_sync``: the first run, which writes every job to the three stock
  children through ``jobs/create`` and friends (not a target: shown for scale);
- ``stock_scan`` (10^3 and 10^4 jobs): one bulk-loaded stock server scanned alone
  (:func:`wmsync.stock.scan.scan`), the part of a run that grows with the repository;
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
#: Sizes scanned alone (a bulk-loaded stock server each), and sizes of whole clusters,
#: whose first run writes every job to three stock children over REST (slow: about ten
#: requests per job and child), so only the smaller size by default.
SCAN_SIZES = {"default": [1_000, 10_000], "smoke": [20, 40]}
CLUSTER_SIZES = {"default": [1_000], "smoke": [20]}
REPEATS = {"default": 1, "smoke": 1}
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
            [
                sys.executable,
                "-m",
                "wmsync.emulator",
                "--repository",
                name,
                "--stock",
                "--db",
                str(db_path),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
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
                    session.edit(
                        "Hold",
                        None,
                        {
                            "job": job.guid,
                            "type": "1",
                            "heldBy": "bench",
                            "holdDate": "0",
                            "holdComments": f"hold on {job_id}",
                        },
                    )
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
        [sys.executable, "-m", module, json.dumps(spec)],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        cwd=str(ROOT),
        env=_env(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed: {done.stderr.decode()[-2000:]}")
    figures: Dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def sync(cluster: StockCluster, state_path: Path) -> Dict[str, Any]:
    """One synchronization in a fresh client process; its figures."""
    figures = _subprocess(
        "benchmarks.stock_run",
        {
            "parent_url": cluster.parent_url,
            "parent_name": cluster.parent_name,
            "children": cluster.table(),
            "stock_urls": cluster.stock_urls,
            "state_path": str(state_path),
        },
    )
    if figures["status"] != 0:
        raise RuntimeError(f"stock synchronization failed: {figures}")
    figures["bytes_moved"] = figures["bytes_sent"] + figures["bytes_received"]
    return figures


def scan_alone(url: str) -> Dict[str, Any]:
    """One scan of one stock server in a fresh process: wall time, requests, RSS."""
    return _subprocess("benchmarks.stock_scan", {"url": url})


def record(
    name: str, jobs: int, changes: int, figures: Dict[str, Any], **extra: Any
) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "scenario": name,
        "jobs_per_repository": jobs,
        "changes": changes,
        "children": CHILDREN,
        "stock_children": CHILDREN,
        "wall_s": figures["wall_s"],
        "requests": figures["requests"],
        "requests_per_job_per_scan": round(
            figures["requests"] / (jobs * figures.get("scans", CHILDREN)), 3
        ),
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


def run_scans(sizes: List[int], repeats: int, workdir: Path, out: List[Dict[str, Any]]) -> None:
    """``stock_scan``: one bulk-loaded true stock server per size, scanned alone in a
    fresh process (requests per job, wall time, the scanning process's peak RSS)."""
    for jobs in sizes:
        folder = workdir / f"scan-{jobs}"
        folder.mkdir(parents=True)
        store = Store(folder / "Stock.sqlite", "Stock")
        log(f"scan {jobs}: bulk loading a stock server")
        load(store, jobs)
        server = StockEmulator("Stock", store.path, folder / "Stock.log")
        try:
            scans = [scan_alone(server.url) for _ in range(repeats)]
        finally:
            server.stop()
        best = min(scans, key=lambda s: s["wall_s"])
        log(
            f"scan {jobs}: {[s['wall_s'] for s in scans]} s, {best['requests']} requests, "
            f"{best['client_peak_rss_mb']} MB"
        )
        out.append(
            record(
                "stock_scan",
                jobs,
                0,
                dict(best, scans=1),
                children=1,
                stock_children=1,
                all_wall_s=[s["wall_s"] for s in scans],
                note="one scan of one stock repository, alone",
            )
        )


def run_clusters(sizes: List[int], repeats: int, workdir: Path, out: List[Dict[str, Any]]) -> None:
    """Whole runs of an extension parent and three stock children, per size."""
    for jobs in sizes:
        cluster = StockCluster(workdir, f"stock-{jobs}", CHILDREN)
        try:
            log(f"{jobs} jobs: bulk loading the parent")
            load(cluster.stores[cluster.parent_name], jobs)
            cluster.start()
            state_path = cluster.workdir / "state" / "state.sqlite"
            log(f"{jobs} jobs: first run, every job written to {CHILDREN} stock children")
            first = sync(cluster, state_path)
            out.append(
                record(
                    "stock_first_sync",
                    jobs,
                    jobs,
                    first,
                    note="writes every job to the stock children over REST",
                )
            )
            log(f"{jobs} jobs: first run {first['wall_s']} s, {first['requests']} requests")
            quiet = [sync(cluster, state_path) for _ in range(repeats)]
            for figures in quiet:
                if figures["sent"] + figures["received"]:
                    raise RuntimeError(f"a no-change run moved something: {figures}")
            best = min(quiet, key=lambda f: f["wall_s"])
            log(f"{jobs} jobs: no-change runs {[f['wall_s'] for f in quiet]} s")
            out.append(
                record(
                    "stock_no_change",
                    jobs,
                    0,
                    best,
                    all_wall_s=[f["wall_s"] for f in quiet],
                    note="nothing to move: one scan of each stock child",
                )
            )
            child = cluster.child_names[0]
            changes = min(CHANGES, jobs // 2)
            ids = cluster.job_ids(child, changes)
            cluster.stores[child].bulk_update_jobs(ids, {"description": f"changed {jobs}"})
            incremental = sync(cluster, state_path)
            log(
                f"{jobs} jobs: {changes} changes {incremental['wall_s']} s, moved "
                f"{incremental['sent'] + incremental['received']}"
            )
            out.append(
                record(
                    "stock_incremental",
                    jobs,
                    changes,
                    incremental,
                    note=f"{changes} jobs changed on one stock child",
                )
            )
        finally:
            cluster.close()


def run_stock(mode: str, workdir: Path, out: List[Dict[str, Any]]) -> None:
    """Every stock measurement of *mode* (``default`` or ``smoke``), appended to *out*."""
    run_clusters(CLUSTER_SIZES[mode], REPEATS[mode], workdir, out)
    run_scans(SCAN_SIZES[mode], REPEATS[mode], workdir, out)


def _find(records: List[Dict[str, Any]], scenario: str, jobs: int) -> Optional[Dict[str, Any]]:
    for item in records:
        if item["scenario"] == scenario and item["jobs_per_repository"] == jobs:
            return item
    return None


def targets(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The stock targets from *records* (each only when what it needs was measured)."""
    found: List[Dict[str, Any]] = []

    def target(name: str, value: float, limit: float) -> None:
        found.append({"target": name, "value": value, "limit": limit, "met": value <= limit})

    scans = sorted(
        (r for r in records if r["scenario"] == "stock_scan"),
        key=lambda r: r["jobs_per_repository"],
    )
    quiet = sorted(
        (r for r in records if r["scenario"] == "stock_no_change"),
        key=lambda r: r["jobs_per_repository"],
    )
    if quiet:
        large = quiet[-1]
        target(
            f"stock: no-change run of 3 stock children of {large['jobs_per_repository']} jobs, s",
            large["wall_s"],
            NO_CHANGE_LIMIT_S,
        )
    if scans:
        large = scans[-1]
        target(
            f"stock: requests per job per scan at {large['jobs_per_repository']} jobs",
            large["requests_per_job_per_scan"],
            REQUESTS_PER_JOB_LIMIT,
        )
    if len(scans) > 1:
        small, large = scans[0], scans[-1]
        target(
            f"stock: scanning process peak RSS ratio {large['jobs_per_repository']}/"
            f"{small['jobs_per_repository']}",
            round(large["client_peak_rss_mb"] / small["client_peak_rss_mb"], 3),
            RSS_RATIO_LIMIT,
        )
    return found


def merge(
    output: Path, records: List[Dict[str, Any]], meta: Dict[str, Any], replace: str = "stock_"
) -> None:
    """Replace the records of *output* whose scenario starts with *replace* (all stock
    ones by default) by *records*, and the stock targets by those of every stock record
    then present, keeping the rest."""
    document: Dict[str, Any] = {}
    if output.exists():
        document = json.loads(output.read_text(encoding="utf-8"))
    kept = [r for r in document.get("scenarios", []) if not r["scenario"].startswith(replace)]
    document["scenarios"] = kept + records
    stock = [r for r in document["scenarios"] if r["scenario"].startswith("stock_")]
    old = [t for t in document.get("targets", []) if not t["target"].startswith("stock:")]
    document["targets"] = old + targets(stock)
    document["stock_meta"] = meta
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def others_argv(argv: List[str]) -> Optional[List[str]]:
    """The arguments for :func:`benchmarks.run.main` without ``--only stock`` (which it
    does not know); ``None`` when stock is the only scenario asked for."""
    rest: List[str] = []
    only: List[str] = []
    items = iter(argv)
    for item in items:
        if item == "--only":
            value = next(items, "")
        elif item.startswith("--only="):
            value = item.split("=", 1)[1]
        else:
            rest.append(item)
            continue
        only.append(value)
        if value != "stock":
            rest += ["--only", value]
    if only and all(v == "stock" for v in only):
        return None
    return rest


def after_others(argv: List[str]) -> int:
    """The stock scenario as part of ``python -m benchmarks``: run when no ``--only``
    is given (except in ``--smoke`` mode, whose other scenarios are a quick check) or
    with ``--only stock``; merged into the same results file."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--long", action="store_true")
    parser.add_argument("--only", action="append")
    parser.add_argument("--output", default=None)
    args, _ = parser.parse_known_args(argv)
    wanted = "stock" in args.only if args.only is not None else not args.smoke
    if not wanted:
        return 0
    return main(
        (["--smoke"] if args.smoke else []) + (["--output", args.output] if args.output else [])
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stock", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): a check")
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file to merge into (default: "
        "benchmarks/results/latest.json; smoke: results/smoke.json)",
    )
    parser.add_argument(
        "--scans-only",
        action="store_true",
        help="measure only the stock_scan scenario (the other stock records are kept)",
    )
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "default"
    output = (
        Path(args.output)
        if args.output
        else RESULTS / ("smoke.json" if args.smoke else "latest.json")
    )
    started = time.perf_counter()
    records: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wmsync-bench-stock-") as tmp:
        if args.scans_only:
            run_scans(SCAN_SIZES[mode], REPEATS[mode], Path(tmp), records)
        else:
            run_stock(mode, Path(tmp), records)
    merge(
        output,
        records,
        {
            "mode": mode + (" (scans only)" if args.scans_only else ""),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runtime_s": round(time.perf_counter() - started, 1),
        },
        replace="stock_scan" if args.scans_only else "stock_",
    )
    for item in targets(records):
        log(
            f"{'MET ' if item['met'] else 'MISS'} {item['target']}: {item['value']} "
            f"(limit {item['limit']})"
        )
    log(f"merged into {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
