"""One synchronization of a cluster with stock children, in a process of its own:
``python -m benchmarks.stock_run JSON``.

As :mod:`benchmarks.client_run`, but every child URL in ``stock_urls`` is reached
through a stock replica (:class:`wmsync.stock.StockReplicas`, state store at
``state_path``), so the figures include the scan of each stock repository. Prints one
JSON object: wall time, requests and bytes (every client the run created), the result's
status and counts, the state store's size on disk and the process's peak RSS in MB.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.stock import StockReplicas

from .client_run import peak_rss_mb


def state_bytes(state_path: Path) -> int:
    """The state store on disk: the registry and every shadow beside it (WAL included)."""
    files = list(state_path.parent.glob(state_path.name + "*"))
    shadows = state_path.with_name(state_path.name + ".d")
    if shadows.is_dir():
        files += [f for f in shadows.iterdir() if f.is_file()]
    return sum(f.stat().st_size for f in files if f.is_file())


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    clients: List[WMServerClient] = []
    state_path = Path(spec["state_path"])
    stock = {u.rstrip("/").lower() for u in spec["stock_urls"]}
    builder = StockReplicas(state_path)

    def factory(url: str) -> Any:
        client = WMServerClient(url, user="bench", timeout=600.0)
        clients.append(client)
        if url.rstrip("/").lower() in stock:
            return builder(url, client, None)
        return client

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    try:
        result = synchronize(
            spec["parent_url"],
            spec["parent_name"],
            spec["children"],
            client_factory=factory,
            max_workers=int(spec.get("max_workers", 4)),
        )
    finally:
        builder.close()
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 4),
        "requests": sum(c.requests_made for c in clients),
        "bytes_sent": sum(c.bytes_sent for c in clients),
        "bytes_received": sum(c.bytes_received for c in clients),
        "status": result.status,
        "error": result.error,
        "sent": sum(c.sent for c in result.children),
        "received": sum(c.received for c in result.children),
        "child_errors": [c.error for c in result.children if c.error],
        "warnings": builder.warnings()[:5],
        "state_bytes": state_bytes(state_path),
        "rss_at_start_mb": round(rss_before, 1),
        "client_peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
