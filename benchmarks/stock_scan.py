"""One scan of one stock server in a process of its own:
``python -m benchmarks.stock_scan '{"url": ...}'`` prints wall time, requests and the
process's peak RSS (what :func:`wmsync.stock.scan.scan` costs, without the fold)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict

from wmsync.client import WMServerClient
from wmsync.stock.scan import scan

from .client_run import peak_rss_mb


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    client = WMServerClient(spec["url"], user="bench", timeout=600.0)
    started = time.perf_counter()
    snapshot = scan(client)
    wall = time.perf_counter() - started
    jobs = len(snapshot.jobs)
    snapshot.close()
    client.close()
    return {
        "wall_s": round(wall, 4),
        "jobs": jobs,
        "requests": client.requests_made,
        "bytes_received": client.bytes_received,
        "client_peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
