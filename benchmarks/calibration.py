"""How fast this machine is right now: a fixed workload that uses none of wmsync.

The benchmark machines are shared, and their speed moves by a factor of two between
hours (docs/performance.md, "Reading the figures"). Ratios within one run are immune;
absolute figures such as the first full synchronization's seconds are not. Each run
therefore times the same small workload, in the three things a synchronization spends
its time on (Python, SQLite, lxml), at its start and at its end, and records both in
its ``meta``: two runs' absolute figures compare once divided by their calibrations.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Dict

import lxml.etree

ROWS = 100_000
ELEMENTS = 20_000
REPEATS = 3


def _python() -> None:
    total = 0
    for number in range(1_000_000):
        total += number * number % 7


def _sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (guid TEXT PRIMARY KEY, body TEXT)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)",
            ((f"{{{number:032x}}}", "x" * 40) for number in range(ROWS)),
        )
    finally:
        conn.close()


def _lxml() -> None:
    root = lxml.etree.Element("root")
    for number in range(ELEMENTS):
        lxml.etree.SubElement(root, "job", id=str(number), name=f"job {number}").text = "x"
    lxml.etree.fromstring(lxml.etree.tostring(root))


def calibrate() -> Dict[str, float]:
    """Seconds for each part of the fixed workload (the fastest of three) and their sum."""
    figures: Dict[str, float] = {}
    for name, work in (("python_s", _python), ("sqlite_s", _sqlite), ("lxml_s", _lxml)):
        best = float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - started)
        figures[name] = round(best, 4)
    figures["total_s"] = round(sum(figures.values()), 4)
    return figures
