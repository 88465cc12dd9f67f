"""The last restore signal (docs/design.md §4, "Restores and rebuilds"): each side
records the other's highest own counter in any version vector; a repository whose own
counter is now below it went back in time, even when its instance id, the pair's
syncId and its generation all still match. Against emulators on loopback."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, List

from tests.cluster import assert_converged, create_job, make_cluster
from wmsync import synchronize
from wmsync.progress import SyncListener
from wmsync.repository.store import OWN_COUNTER_MARK

USER = "tester"


class Recorder(SyncListener):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: List[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)


def sync(cluster: Any) -> Recorder:
    recorder = Recorder()
    result = synchronize(
        cluster.parent.url, cluster.parent_name, cluster.table(), user=USER, listener=recorder
    )
    assert result.status == 0, [c.error for c in result.children]
    return recorder


def went_back(recorder: Recorder) -> List[str]:
    return [w for w in recorder.warnings if "went back in time" in w]


def test_a_lower_own_counter_is_found_when_every_other_mark_still_matches(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio")
    ohio, parent = cluster.client("Ohio"), cluster.client("Parent")
    job = create_job(ohio, "counted")
    for n in range(4):
        ohio.post(f"jobs/{job}/update", description=f"edit {n}")
    assert went_back(sync(cluster)) == []
    assert went_back(sync(cluster)) == []  # the marks are recorded and hold
    info = ohio.replication_info()
    row = next(n for n in parent.replication_info()["nodes"] if n["name"] == "Ohio")
    assert info["ownCounter"] >= 5 and row["peerCounterSeen"] == f"Ohio:{info['ownCounter']}"

    # As a restore that lost edits would leave it, with nothing else telling: the own
    # counters go down, while the node rows (instance id, syncId and its sequence
    # number) and the generation stay as they were.
    generation = info["generation"]
    conn = sqlite3.connect(str(cluster.children[0].store.path))
    with conn:
        for guid, vv in conn.execute("SELECT guid, vv FROM elements").fetchall():
            counters = json.loads(vv)
            if counters.get("Ohio", 0) > 1:
                counters["Ohio"] = 1
                conn.execute(
                    "UPDATE elements SET vv = ? WHERE guid = ?", (json.dumps(counters), guid)
                )
        # A restore puts back the store's counter mark with the elements it goes with.
        marked = conn.execute(
            "UPDATE meta SET value = json_set(value, '$.counter', 1) WHERE key = ?",
            (OWN_COUNTER_MARK,),
        )
        assert marked.rowcount == 1
    conn.close()
    assert ohio.replication_info()["generation"] == generation
    assert ohio.replication_info()["ownCounter"] == 1

    found = went_back(sync(cluster))
    assert len(found) == 1 and found[0].startswith("Ohio went back in time"), found
    assert f"its highest own counter 1 (Ohio) is below the {info['ownCounter']}" in found[0]
    assert ohio.replication_info()["incarnation"] != "Ohio"  # its counters are not reused
    assert_converged(cluster)
    assert went_back(sync(cluster)) == []  # handled once
