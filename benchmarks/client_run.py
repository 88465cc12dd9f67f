"""One synchronization in a process of its own: ``python -m benchmarks.client_run JSON``.

Run in a fresh process so that the peak resident memory it reports (VmHWM, a high-water
mark of the whole process) belongs to this one run. Prints one JSON object: wall time,
requests, bytes sent and received (summed over every client the run created), the
result's status and per-child counts, and the process's peak RSS in MB.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any, Dict, List

from wmsync import client as client_module
from wmsync import synchronize
from wmsync.client import WMServerClient


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    # The run goes through the product's own replica factory, as `wmsync sync` does (it
    # reads each server's kind); every client it makes is counted.
    clients: List[WMServerClient] = []

    class Counted(WMServerClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clients.append(self)

    client_module.WMServerClient = Counted  # type: ignore[misc]  # the factory looks it up
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    cpu_started = time.process_time()
    result = synchronize(
        spec["parent_url"],
        spec["parent_name"],
        spec["children"],
        user="bench",
        timeout=600.0,
        full=bool(spec.get("full", False)),
        max_workers=int(spec.get("max_workers", 4)),
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "wall_s": round(wall, 4),
        "client_cpu_s": round(cpu, 3),
        "requests": sum(c.requests_made for c in clients),
        "bytes_sent": sum(c.bytes_sent for c in clients),
        "bytes_received": sum(c.bytes_received for c in clients),
        "clients_created": len(clients),
        "status": result.status,
        "error": result.error,
        "sent": sum(c.sent for c in result.children),
        "received": sum(c.received for c in result.children),
        "child_errors": [c.error for c in result.children if c.error],
        "rss_at_start_mb": round(rss_before, 1),
        "client_peak_rss_mb": round(peak_rss_mb(), 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
