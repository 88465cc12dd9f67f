"""A stock server restored from a backup (docs/design.md §4 "Restores and rebuilds",
§10; docs/stock.md): the state store notices it and nothing the restore took away is
lost, against stock emulators on loopback. The restore is a real one: SQLite's backup
API writes an earlier copy of the server's database back into the live file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator, Tuple

from test_stock import ALL, assert_converged, comments, converge, fill, make, sync


def backup(source_path: Path, dest_path: Path) -> Path:
    """Copy a live SQLite database consistently with the backup API."""
    source, dest = sqlite3.connect(str(source_path)), sqlite3.connect(str(dest_path))
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    return dest_path


def _db(cluster: Any, name: str) -> Path:
    server = next(s for s in [cluster.parent, *cluster.children] if cluster.name_of(s) == name)
    return Path(server.db_path)


def test_a_restored_stock_child_gets_back_what_the_restore_took(
    emulator: Any, tmp_path: Path
) -> None:
    cluster = make(emulator, *ALL, stock=ALL)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, ALL, runs=2)
    copy = backup(_db(cluster, "A"), tmp_path / "a-backup.sqlite")
    a, p = cluster.client("A"), cluster.client("P")
    # After the backup: edits that reach the whole cluster, some of them made on A.
    p.post("jobs/1/update", properties='{"name": "renamed on P after the backup"}')
    a.post("jobs/1000001/update", properties='{"description": "set on A after the backup"}')
    a.post("jobs/1000001/activity/logAction", type=7, comments="comment on A after the backup")
    new = a.post("jobs/create", jobTypeId=1, id=1000010, name="made on A after the backup")
    assert new["jobIds"] == [1000010]
    p.post("jobs/2/delete")
    converge(cluster, state, ALL, runs=1)
    before = assert_converged(cluster)
    assert 2 not in before and before[1000010][0] == "made on A after the backup"

    backup(copy, _db(cluster, "A"))  # A is restored to the backup
    assert "made on A after the backup" not in {v[0] for v in _view_names(a)}
    a.post("jobs/1000002/update", properties='{"name": "edited on A after the restore"}')

    first = sync(cluster, state, ALL)
    assert first.status == 0, [c.error for c in first.children]
    converge(cluster, state, ALL, runs=1)
    held = assert_converged(cluster)
    assert held[1][0] == "renamed on P after the backup"  # not set back by A's restore
    assert held[1000001][1] == "set on A after the backup"  # A's own edit is not lost
    assert held[1000010][0] == "made on A after the backup"  # written to A again
    assert 2 not in held  # the delete stays
    assert held[1000002][0] == "edited on A after the restore"  # a later edit wins
    found = comments(a)
    assert found[(1000001, "comment on A after the backup")] == 1  # back, once
    warned = [w for w in first.stock_warnings if "went back in time" in w]
    assert warned and warned[0].startswith("A went back in time")
    again = sync(cluster, state, ALL)
    assert again.status == 0
    assert not [w for w in again.stock_warnings if "went back in time" in w]
    assert assert_converged(cluster) == held


def _view_names(client: Any) -> Iterator[Tuple[str]]:
    for job_id in client.get("jobs")["jobIds"]:
        yield (client.get(f"jobs/{job_id}")["name"],)
