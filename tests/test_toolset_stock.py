"""The replication toolset on stock servers (docs/design.md §10, §11; docs/stock.md):
``wmsync status | conflicts | clear | replicate | export | import`` as processes, with
``--state``, against emulators in stock mode on loopback. A stock server keeps no rows
of ours, so node rows, watermarks and the conflict log come from the state store; the
servers are only read, except where the command's purpose is to write jobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from cluster import USER
from test_stock import ALL, assert_converged, fill, job, make, snapshot_counts, view
from test_stock_cli import cli_sync, run_cli


def _run(*args: str, state: Path) -> Any:
    return run_cli(*args, "--user", USER, "--state", str(state))


def _json(done: Any) -> Dict[str, Any]:
    assert done.stdout.strip(), done.stderr
    return dict(json.loads(done.stdout))


def _synced(emulator: Any, tmp_path: Path) -> Any:
    cluster = make(emulator, *ALL, stock=ALL)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    for _ in range(2):
        done = cli_sync(cluster, state)
        assert done.returncode == 0, done.stdout + done.stderr
    assert_converged(cluster)
    return cluster, state


def _status(cluster: Any, state: Path) -> Any:
    return _run(
        "status",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        cluster.parent_name,
        "--json",
        state=state,
    )


def _children(status: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(status["children"])


def test_status_of_a_stock_cluster_counts_what_waits_and_writes_nothing(
    emulator: Any, tmp_path: Path
) -> None:
    cluster, state = _synced(emulator, tmp_path)
    cluster.client("A").post("jobs/1000001/update", properties='{"name": "edited on A"}')
    before = snapshot_counts(cluster)
    done = _status(cluster, state)
    assert done.returncode == 0, done.stdout + done.stderr
    status = _json(done)
    children = {c["name"]: c for c in _children(status)}
    assert sorted(children) == ["A", "B"]
    assert all(c["reachable"] for c in children.values())
    assert children["A"]["waiting_to_parent"] >= 1  # the edit on A, found by a scan
    assert children["B"]["waiting_to_parent"] == 0
    assert snapshot_counts(cluster) == before  # status wrote nothing to any server


def test_conflicts_on_a_stock_parent_listed_and_restored(emulator: Any, tmp_path: Path) -> None:
    cluster, state = _synced(emulator, tmp_path)
    cluster.client("P").post("jobs/1/update", properties='{"name": "P says"}')
    cluster.client("A").post("jobs/1/update", properties='{"name": "A says"}')
    done = cli_sync(cluster, state)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = _run("conflicts", "--url", cluster.parent.url, "--json", state=state)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    entries = [e for e in _json(listed)["conflicts"] if e.get("id") == 1]
    assert entries, listed.stdout
    entry = entries[-1]
    kept = view(cluster.client("P"))[1][0]
    loser = {"P says", "A says"} - {kept}
    assert len(loser) == 1 and "name" in entry["fields"]
    restored = _run(
        "conflicts", "--url", cluster.parent.url, "--restore", str(entry["number"]), state=state
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert view(cluster.client("P"))[1][0] == loser.pop()
    for _ in range(2):
        assert cli_sync(cluster, state).returncode == 0
    held = assert_converged(cluster)
    assert held[1][0] == view(cluster.client("P"))[1][0]


def test_clear_a_stock_child_then_replicate_it_again(emulator: Any, tmp_path: Path) -> None:
    cluster, state = _synced(emulator, tmp_path)
    before = snapshot_counts(cluster)
    cleared = _run(
        "clear",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        "P",
        "--child",
        "A",
        "--json",
        state=state,
    )
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert snapshot_counts(cluster) == before  # jobs are never touched
    status = _json(_status(cluster, state))
    assert [c["name"] for c in _children(status)] == ["B"]
    job(cluster.client("A"), "made while A was out", 1000050)
    joined = _run(
        "replicate",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        "P",
        "--child-url",
        cluster.client("A").url,
        "--child-name",
        "A",
        state=state,
    )
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert cli_sync(cluster, state).returncode == 0
    held = assert_converged(cluster)
    assert held[1000050][0] == "made while A was out"
    names = [c["name"] for c in _children(_json(_status(cluster, state)))]
    assert sorted(names) == ["A", "B"]


def test_a_stock_office_kept_in_step_by_files(emulator: Any, tmp_path: Path) -> None:
    """HQ (stock) and a disconnected stock office exchange files only."""
    cluster = make(emulator, "HQ", "Office", stock=("HQ", "Office"))
    hq, office = cluster.client("HQ"), cluster.client("Office")
    job(hq, "from HQ", 7)
    state = tmp_path / "state.sqlite"
    join = tmp_path / "join.zip"
    out = _run(
        "export",
        "--url",
        hq.url,
        "--to",
        "Office",
        "--out",
        str(join),
        "--register-child",
        "--child-url",
        office.url,
        state=state,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    done = _run("import", "--url", office.url, "--file", str(join), state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert view(office)[7][0] == "from HQ"
    job(office, "from the office", 1000001)
    back = tmp_path / "back.zip"
    out = _run("export", "--url", office.url, "--to", "HQ", "--out", str(back), state=state)
    assert out.returncode == 0, out.stdout + out.stderr
    done = _run("import", "--url", hq.url, "--file", str(back), state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert view(hq)[1000001][0] == "from the office"
    before = snapshot_counts(cluster)
    again = _run("import", "--url", hq.url, "--file", str(back), state=state)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot_counts(cluster) == before  # a file imported twice writes nothing
