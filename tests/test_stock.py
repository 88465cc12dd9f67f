"""Stock replicas (docs/design.md §10): clusters synchronized through Esri's documented
operations and the state store, against emulators on loopback.

The servers are chosen in one place, :func:`start_stock_server`: the emulator in stock
mode, as a real Esri server answers (no replication extensions, no configuration writes
over REST: an administrator's additions are a restart with ``site``). The stock replica
is used for every URL in ``stock``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple

import pytest
from cluster import USER, Cluster

from wmsync.client import WMServerClient
from wmsync.emulator.site import SiteConfig
from wmsync.engine import synchronize
from wmsync.errors import RepositoryError
from wmsync.stock import StockReplicas
from wmsync.stock.views import strip_tag

BLOCK = 1_000_000


def start_stock_server(emulator: Callable[..., Any], name: str, **options: Any) -> Any:
    """The one place that picks what a stock server is in these tests: the emulator in
    stock mode (Esri's documented operations only, configuration from ``site``)."""
    return emulator(name, stock=True, **options)


def _restart_with(cluster: Cluster, name: str, site: SiteConfig) -> None:
    """Restart one repository on the same port with *site* added to its configuration
    (what an administrator does in Workflow Manager Administrator); the cluster's
    client for it is made anew."""
    servers = [cluster.parent, *cluster.children]
    index = next(i for i, s in enumerate(servers) if cluster.name_of(s) == name)
    old = servers[index]
    old.stop()
    emulator = cluster.emulator  # type: ignore[attr-defined]
    again = emulator(name, port=old.port, stock=bool(old.app.config.stock), site=site)
    assert again.url == old.url
    if index == 0:
        cluster.parent = again
    else:
        cluster.children[index - 1] = again
    cluster.clients[name].close()
    cluster.clients[name] = WMServerClient(again.url, user=USER)


def add_job_type(cluster: Cluster, name: str, type_name: str) -> int:
    """An administrator adds a job type to one repository: a stock server (no
    configuration writes over REST) is restarted with a ``--config`` that adds it."""
    client = cluster.client(name)
    if not _is_stock(cluster, name):
        return int(client.post("jobTypes/create", name=type_name)["id"])
    _restart_with(cluster, name, SiteConfig(job_types=((type_name, ""),)))
    types = cluster.client(name).get("")["jobTypes"]
    return int(next(t["id"] for t in types if t["name"] == type_name))


def add_user(cluster: Cluster, name: str, user: str) -> None:
    """An administrator adds a user to one repository (see :func:`add_job_type`)."""
    if not _is_stock(cluster, name):
        cluster.client(name).post("community/users/create", userName=user)
        return
    _restart_with(cluster, name, SiteConfig(users=((user, user),)))


def _is_stock(cluster: Cluster, name: str) -> bool:
    server = next(s for s in [cluster.parent, *cluster.children] if cluster.name_of(s) == name)
    return bool(server.app.config.stock)


def make(emulator: Callable[..., Any], *names: str, stock: Iterable[str] = ()) -> Cluster:
    servers = []
    for name in names:
        servers.append(start_stock_server(emulator, name) if name in stock else emulator(name))
    cluster = Cluster(servers[0], servers[1:])
    cluster.emulator = emulator  # type: ignore[attr-defined]
    for server in servers:
        cluster.clients[cluster.name_of(server)] = WMServerClient(server.url, user=USER)
    return cluster


def url_of(cluster: Cluster, name: str) -> str:
    return cluster.client(name).url


def sync(cluster: Cluster, state: Path, stock: Iterable[str]) -> Any:
    """One run through the engine's own wiring: the default replica factory picks the
    stock replica for every server without the extensions (the builder is the run's)."""
    builder = StockReplicas(state)
    result = synchronize(
        url_of(cluster, cluster.parent_name),
        cluster.parent_name,
        cluster.table(),
        user=USER,
        state=builder,
    )
    kinds = {c.name: c.kind for c in result.children}
    kinds[cluster.parent_name] = result.parent_kind
    for name, kind in kinds.items():
        if kind is not None:  # read (a failed child may not have been)
            assert kind == ("stock" if name in stock else "extensions"), (name, kind)
    result.stock_warnings = builder.warnings()
    result.stock_conflicts = builder.conflicts()
    return result


def job(client: WMServerClient, name: str, job_id: int, **fields: Any) -> int:
    answer = client.post(
        "jobs/create", jobTypeId=fields.pop("jobTypeId", 1), id=job_id, name=name, **fields
    )
    return int(answer["jobIds"][0])


def view(client: WMServerClient) -> Dict[int, Tuple[Any, ...]]:
    """What a repository holds as a user sees it, by job id (GUIDs differ on stock)."""
    types = {t["id"]: t["name"] for t in client.get("").get("jobTypes", [])}
    out: Dict[int, Tuple[Any, ...]] = {}
    for job_id in client.get("jobs")["jobIds"]:
        one = client.get(f"jobs/{job_id}")
        notes = client.get(f"jobs/{job_id}/notes").get("notes")
        holds = sorted(
            (h["type"], strip_tag(h["holdComments"]), h["releaseDate"] is not None)
            for h in client.get(f"jobs/{job_id}/holds")["holds"]
        )
        out[int(job_id)] = (
            one["name"],
            one["description"],
            one["priority"],
            one["status"],
            one["stage"],
            one["assignedTo"],
            types.get(one["jobTypeId"]),
            notes,
            tuple(holds),
            one.get("parentJobId"),
        )
    return out


def comments(client: WMServerClient) -> Counter[Tuple[int, str]]:
    """(job id, message) of every activity record logged as a comment (type 7)."""
    found: Counter[Tuple[int, str]] = Counter()
    for job_id in client.get("jobs")["jobIds"]:
        for record in client.get(f"jobs/{job_id}/activity")["activity"]:
            if record["type"] == 7:
                found[(int(job_id), strip_tag(record["message"]))] += 1
    return found


def counts(client: WMServerClient) -> Tuple[int, int, int]:
    """(jobs, holds, activity records) on a server."""
    ids = client.get("jobs")["jobIds"]
    holds = sum(len(client.get(f"jobs/{i}/holds")["holds"]) for i in ids)
    acts = sum(len(client.get(f"jobs/{i}/activity")["activity"]) for i in ids)
    return len(ids), holds, acts


def assert_converged(cluster: Cluster) -> Dict[int, Tuple[Any, ...]]:
    views = {name: view(cluster.client(name)) for name in cluster.names}
    first = views[cluster.parent_name]
    for name, other in views.items():
        assert other == first, f"{name} differs from {cluster.parent_name}"
    notes = {name: comments(cluster.client(name)) for name in cluster.names}
    for name, found in notes.items():
        assert found == notes[cluster.parent_name], f"{name}: comments differ"
        assert all(n == 1 for n in found.values()), f"{name}: a comment twice"
    return first


def fill(cluster: Cluster) -> None:
    """On each repository, jobs (in its block), a hold, notes and a comment."""
    for index, name in enumerate(cluster.names):
        client = cluster.client(name)
        base = 1 if index == 0 else index * BLOCK + 1
        first = job(client, f"{name} job 1", base, description="d", priority=2)
        second = job(client, f"{name} job 2", base + 1, parentJobId=base)
        client.post(f"jobs/{first}/notes/update", notes=f"notes of {name}")
        client.post(f"jobs/{first}/holds/create", type=1, comments=f"hold on {name}")
        held = client.post(f"jobs/{second}/holds/create", type=2, comments="released")
        client.post(f"jobs/{second}/holds/{held['holdId']}/release", comments="ok")
        client.post(f"jobs/{first}/activity/logAction", type=7, comments=f"comment {name}")


def converge(cluster: Cluster, state: Path, stock: Iterable[str], runs: int = 2) -> Any:
    result = None
    for _ in range(runs):
        result = sync(cluster, state, stock)
        assert result.status == 0, [c.error for c in result.children]
    return result


def snapshot_counts(cluster: Cluster) -> Dict[str, Tuple[int, int, int]]:
    return {name: counts(cluster.client(name)) for name in cluster.names}


# ---------------------------------------------------------------------------


ALL = ("P", "A", "B")


@pytest.mark.parametrize(
    "stock", [ALL, ("A", "B"), ("P",)], ids=["all-stock", "stock-children", "stock-parent"]
)
def test_cluster_converges_and_a_second_run_writes_nothing(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster = make(emulator, *ALL, stock=stock)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock)
    held = assert_converged(cluster)
    assert len(held) == 6
    assert held[1][7] == "notes of P"
    assert held[BLOCK + 2][9] == BLOCK + 1  # parent job references travel by id
    before = snapshot_counts(cluster)
    result = sync(cluster, state, stock)
    assert result.status == 0
    assert snapshot_counts(cluster) == before
    assert_converged(cluster)


def test_a_stock_child_gets_its_id_block_or_a_warning(emulator: Any, tmp_path: Path) -> None:
    cluster = make(emulator, *ALL, stock=ALL)
    result = sync(cluster, tmp_path / "state.sqlite", ALL)
    assert result.status == 0
    # A stock server takes updateConfigProperties JOB_ID_START_VALUE: applied, no warning.
    assert not [w for w in result.stock_warnings if "JOB_ID_START_VALUE" in w]
    for index, name in ((1, "A"), (2, "B")):
        new = int(cluster.client(name).post("jobs/create", jobTypeId=1)["jobIds"][0])
        assert index * BLOCK < new <= (index + 1) * BLOCK, (name, new)


def _ready(emulator: Any, tmp_path: Path, stock: Tuple[str, ...]) -> Tuple[Cluster, Path]:
    cluster = make(emulator, *ALL, stock=stock)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock)
    return cluster, state


def test_edits_on_two_sides_and_the_same_job_concurrently(emulator: Any, tmp_path: Path) -> None:
    cluster, state = _ready(emulator, tmp_path, ALL)
    a, b = cluster.client("A"), cluster.client("B")
    a.post("jobs/1/update", properties='{"description": "from A"}')
    b.post(f"jobs/{BLOCK + 1}/update", properties='{"priority": 4}')
    a.post("jobs/2/update", properties='{"name": "A wins?"}')
    b.post("jobs/2/update", properties='{"name": "B wins?"}')
    a.post(f"jobs/{2 * BLOCK + 2}/notes/update", notes="new notes on A")
    copy = next(h for h in b.get("jobs/1/holds")["holds"] if h["releaseDate"] is None)
    b.post(f"jobs/1/holds/{copy['id']}/release", comments="released on B")
    b.post("jobs/1/activity/logAction", type=7, comments="said on B")
    result = converge(cluster, state, ALL, runs=1)
    held = assert_converged(cluster)
    assert held[2 * BLOCK + 2][7] == "new notes on A"
    assert held[1][8] == ((1, "hold on P", True),)  # released everywhere, still one hold
    assert comments(cluster.client("P"))[(1, "said on B")] == 1
    assert held[1][1] == "from A"
    assert held[BLOCK + 1][2] == 4
    assert held[2][0] in ("A wins?", "B wins?")
    assert len(result.conflicts) >= 1
    builder = StockReplicas(state)
    logged = []
    for name in ALL:
        replica = builder(url_of(cluster, name), WMServerClient(url_of(cluster, name), user=USER))
        logged += [c for c in replica.conflicts() if c["kind"] == "Job"]
        replica.close()
    builder.close()
    losers = {c["loser"]["content"].get("name") for c in logged}
    assert losers & {"A wins?", "B wins?"}
    before = snapshot_counts(cluster)
    converge(cluster, state, ALL, runs=1)
    assert snapshot_counts(cluster) == before


@pytest.mark.parametrize(
    "stock", [ALL, ("A", "B"), ("P",)], ids=["all-stock", "stock-children", "stock-parent"]
)
def test_deletes_and_close_reopen_travel(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster, state = _ready(emulator, tmp_path, stock)
    cluster.client("A").post(f"jobs/{BLOCK + 2}/delete")
    cluster.client("P").post("jobs/2/delete")
    cluster.client("B").post("jobs/close", jobs="1")
    cluster.client("A").post("jobs/close", jobs=str(2 * BLOCK + 1))
    converge(cluster, state, stock, runs=1)
    held = assert_converged(cluster)
    assert BLOCK + 2 not in held and 2 not in held
    assert held[1][4] == 5 and held[2 * BLOCK + 1][4] == 5
    cluster.client("P").post("jobs/reopen", jobs="1")
    converge(cluster, state, stock, runs=1)
    held = assert_converged(cluster)
    assert held[1][4] != 5 and held[2 * BLOCK + 1][4] == 5
    before = snapshot_counts(cluster)
    converge(cluster, state, stock, runs=1)
    assert snapshot_counts(cluster) == before


@pytest.mark.parametrize("stock", [ALL, ("A", "B")], ids=["all-stock", "stock-children"])
def test_a_job_type_missing_on_a_stock_child_makes_its_jobs_wait(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster, state = _ready(emulator, tmp_path, stock)
    parent = cluster.client("P")
    type_id = add_job_type(cluster, "P", "Edit Data")
    job(parent, "needs Edit Data", 50, jobTypeId=type_id)
    result = sync(cluster, state, stock)
    warned = [w for w in result.stock_warnings if "Edit Data" in w]
    assert len(warned) == 2 and all("Workflow Manager Administrator" in w for w in warned)
    assert 50 not in view(cluster.client("A")) and 50 not in view(cluster.client("B"))
    result = sync(cluster, state, stock)  # retried, still waiting, warned again once
    assert len([w for w in result.stock_warnings if "Edit Data" in w]) == 2
    for name in ("A", "B"):
        add_job_type(cluster, name, "Edit Data")
    converge(cluster, state, stock, runs=1)
    held = assert_converged(cluster)
    assert held[50][6] == "Edit Data"


@pytest.mark.parametrize(
    "stock", [ALL, ("A", "B"), ("P",)], ids=["all-stock", "stock-children", "stock-parent"]
)
def test_a_deleted_state_file_is_rebuilt_without_duplicates(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster, state = _ready(emulator, tmp_path, stock)
    before = snapshot_counts(cluster)
    for path in tmp_path.glob("state.sqlite*"):
        if path.is_dir():
            for inner in path.iterdir():
                inner.unlink()
            path.rmdir()
        else:
            path.unlink()
    converge(cluster, state, stock, runs=2)
    assert_converged(cluster)
    assert snapshot_counts(cluster) == before
    cluster.client("A").post(f"jobs/{BLOCK + 1}/update", properties='{"name": "after"}')
    converge(cluster, state, stock, runs=1)
    assert assert_converged(cluster)[BLOCK + 1][0] == "after"


_RUNNER = """
import json, sys
from wmsync.engine import synchronize
args = json.loads(sys.argv[1])
result = synchronize(args["parent"], args["name"], args["table"], user=args["user"],
                     state=args["state"])
print(result.status)
"""


#: Runs killed at a random moment (the long mode, ``WMSYNC_LONG=1``, kills 24).
KILLS = int(os.environ.get("WMSYNC_STOCK_KILLS") or (24 if os.environ.get("WMSYNC_LONG") else 4))


def _record_kills(killed: int, killed_running: int, mid_write: int, jobs: int) -> None:
    """Print the tallies (``-s`` shows them; the long run's figures are in
    docs/reliability.md)."""
    print(
        f"stock kills: {killed} runs killed, {killed_running} while running, "
        f"{mid_write} in the middle of writing a job; {jobs} jobs converged"
    )


def _open_intents(state: Path) -> int:
    """Jobs a killed run was writing to (intents it had not cleared)."""
    import sqlite3

    total = 0
    for shadow in Path(str(state) + ".d").glob("*.sqlite"):
        conn = sqlite3.connect(str(shadow))
        try:
            total += conn.execute("SELECT COUNT(*) FROM stock_intents").fetchone()[0]
        finally:
            conn.close()
    return total


def test_a_run_killed_while_writing_leaves_nothing_twice_and_nothing_lost(
    emulator: Any, tmp_path: Path
) -> None:
    import json
    import random
    import subprocess
    import sys
    import time

    cluster, state = _ready(emulator, tmp_path, ALL)
    rng = random.Random(13)
    args = json.dumps(
        {
            "state": str(state),
            "user": USER,
            "stock": [url_of(cluster, n) for n in ALL],
            "parent": url_of(cluster, "P"),
            "name": "P",
            "table": cluster.table(),
        }
    )
    killed_running = mid_write = 0
    whole = 0.0
    round_ = 0
    # KILLS kills at random moments, and more (up to 3 x KILLS) until one lands in the
    # middle of writing a job: on a loaded machine a few random kills can all miss it.
    while round_ <= KILLS or (mid_write == 0 and round_ <= 3 * KILLS):
        for index, name in enumerate(cluster.names):
            client = cluster.client(name)
            for extra in range(3):
                base = (1 if index == 0 else index * BLOCK + 1) + 10 + round_ * 3 + extra
                new = job(client, f"{name} round {round_}.{extra}", base)
                client.post(f"jobs/{new}/holds/create", type=3, comments=f"hold {new}")
                client.post(f"jobs/{new}/activity/logAction", type=7, comments=f"c {new}")
                client.post(f"jobs/{new}/notes/update", notes=f"n {round_}")
        started = time.monotonic()
        runner = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        round_ += 1
        if round_ == 1:  # a whole run: how long one takes here
            runner.wait()
            whole = time.monotonic() - started
            continue
        time.sleep(rng.uniform(0.35, 0.9) * whole)
        killed_running += runner.poll() is None
        runner.kill()
        runner.wait()
        mid_write += _open_intents(state) > 0
    assert killed_running >= KILLS // 2  # the kills landed while runs were going on
    assert mid_write >= 1  # at least one in the middle of writing a job
    converge(cluster, state, ALL, runs=2)
    held = assert_converged(cluster)  # every comment exactly once everywhere
    assert len(held) == 6 + round_ * 3 * 3
    _record_kills(round_ - 1, killed_running, mid_write, len(held))
    for name in cluster.names:
        for key, value in held.items():
            assert len(value[8]) == len(set(value[8])), f"{name}: job {key} has a hold twice"
    before = snapshot_counts(cluster)
    converge(cluster, state, ALL, runs=1)
    assert snapshot_counts(cluster) == before


def test_two_stock_jobs_with_one_id_stay_two_jobs(emulator: Any, tmp_path: Path) -> None:
    """Stock servers whose id block could not be set may number two different jobs
    alike: both travel, one under another id where its own is taken, none twice."""
    cluster, state = _ready(emulator, tmp_path, ALL)
    job(cluster.client("A"), "A's 70", 70)
    job(cluster.client("B"), "B's 70", 70)
    first = sync(cluster, state, ALL)
    assert first.status == 0
    assert (
        any("is job" in w for w in first.stock_warnings)
        or sum(c.renumbered for c in first.children) > 0
    )
    converge(cluster, state, ALL, runs=1)
    for name in ALL:
        names = Counter(v[0] for v in view(cluster.client(name)).values())
        assert names["A's 70"] == 1 and names["B's 70"] == 1, name
    before = snapshot_counts(cluster)
    converge(cluster, state, ALL, runs=1)
    assert snapshot_counts(cluster) == before


def test_a_job_assigned_to_a_user_missing_on_a_stock_child_waits(
    emulator: Any, tmp_path: Path
) -> None:
    stock = ("A", "B")
    cluster, state = _ready(emulator, tmp_path, stock)
    parent = cluster.client("P")
    add_user(cluster, "P", "alice")
    job(parent, "for alice", 80, assignedType=1, assignedTo="alice")
    result = sync(cluster, state, stock)
    warned = [w for w in result.stock_warnings if "'alice'" in w]
    assert len(warned) == 2 and all(w.startswith("user 'alice' is missing on ") for w in warned)
    assert 80 not in view(cluster.client("A"))
    for name in stock:
        add_user(cluster, name, "alice")
    converge(cluster, state, stock, runs=1)
    assert assert_converged(cluster)[80][5] == "alice"


def test_a_job_type_both_sides_have_by_name_stays_one(emulator: Any, tmp_path: Path) -> None:
    """A stock child joins with its own "Survey" job type and a job of it; the parent
    has its own "Survey": the child's job arrives typed "Survey", and no "Survey_1"."""
    stock = ("A", "B")
    cluster = make(emulator, *ALL, stock=stock)
    for name in ALL:
        add_job_type(cluster, name, "Survey")
    child_type = {t["name"]: t["id"] for t in cluster.client("A").get("")["jobTypes"]}
    job(cluster.client("A"), "surveyed", BLOCK + 5, jobTypeId=child_type["Survey"])
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock, runs=3)
    held = assert_converged(cluster)
    assert held[BLOCK + 5][6] == "Survey"
    for name in ALL:
        names = [t["name"] for t in cluster.client(name).get("")["jobTypes"]]
        assert sorted(names) == ["Default", "Survey"], name


@pytest.mark.parametrize(
    "stock", [ALL, ("A", "B"), ("P",)], ids=["all-stock", "stock-children", "stock-parent"]
)
def test_stock_repositories_joining_with_jobs_converge_in_one_run(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster = make(emulator, *ALL, stock=stock)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock, runs=1)
    assert len(assert_converged(cluster)) == 6
    before = snapshot_counts(cluster)
    converge(cluster, state, stock, runs=1)
    assert snapshot_counts(cluster) == before


def test_one_run_at_a_time_uses_a_stock_repository(emulator: Any, tmp_path: Path) -> None:
    server = start_stock_server(emulator, "A")
    state = tmp_path / "state.sqlite"
    first = StockReplicas(state)
    replica = first(server.url, WMServerClient(server.url, user=USER))
    second = StockReplicas(state, lock_timeout=0.2)
    with pytest.raises(RepositoryError, match="another run is synchronizing"):
        second(server.url, WMServerClient(server.url, user=USER))
    replica.close()
    first.close()
    again = second(server.url, WMServerClient(server.url, user=USER))
    assert again.replication_info()["repository"] == "A"
    again.close()
    second.close()


def test_a_user_edit_during_a_run_is_not_overwritten_unseen(emulator: Any, tmp_path: Path) -> None:
    """A job edited on a stock server after the run's scan is not written over by that
    run; the next run takes the edit and the merge rule decides (loser logged)."""
    stock = ("A",)
    cluster = make(emulator, "P", "A", stock=stock)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock, runs=1)
    parent, child = cluster.client("P"), cluster.client("A")
    parent.post("jobs/1/update", properties='{"name": "parent edit"}')
    builder = StockReplicas(state)
    replica = builder(child.url, WMServerClient(child.url, user=USER))
    replica.export(10**9)  # the run's scan happens here
    child.post("jobs/1/update", properties='{"name": "user edit during the run"}')
    document = tmp_path / "push.jxl"
    info = parent.export(0)
    with open(document, "wb") as out:
        parent.download(info.jxl_url, out)
    replica.import_document(str(document))
    assert child.get("jobs/1")["name"] == "user edit during the run"
    replica.close()
    builder.close()
    result = converge(cluster, state, stock, runs=1)
    winner = assert_converged(cluster)[1][0]
    assert winner in ("parent edit", "user edit during the run")
    loser = ({"parent edit", "user edit during the run"} - {winner}).pop()
    builder = StockReplicas(state)
    replica = builder(child.url, WMServerClient(child.url, user=USER))
    logged = replica.conflicts() + parent.conflicts()
    replica.close()
    builder.close()
    assert any(c["loser"]["content"].get("name") == loser for c in logged), logged
    assert any(
        c["loser"]["content"].get("name") == loser for c in result.stock_conflicts
    )  # and the run can report it


def test_a_delete_during_a_run_meets_the_unwritten_edit_by_the_rule(
    emulator: Any, tmp_path: Path
) -> None:
    """A job deleted on a stock server after the run's scan, while an edit from the
    parent waits to be written there: one outcome everywhere, the loser logged."""
    stock = ("A",)
    cluster = make(emulator, "P", "A", stock=stock)
    fill(cluster)
    state = tmp_path / "state.sqlite"
    converge(cluster, state, stock, runs=1)
    parent, child = cluster.client("P"), cluster.client("A")
    parent.post("jobs/2/update", properties='{"name": "edited on the parent"}')
    builder = StockReplicas(state)
    replica = builder(child.url, WMServerClient(child.url, user=USER))
    replica.export(10**9)  # the run's scan
    child.post("jobs/2/delete")
    document = tmp_path / "push.jxl"
    info = parent.export(0)
    with open(document, "wb") as out:
        parent.download(info.jxl_url, out)
    replica.import_document(str(document))  # left for the next run, no error
    replica.close()
    builder.close()
    result = converge(cluster, state, stock, runs=2)
    held = assert_converged(cluster)
    assert (2 in held) == (held.get(2, ("",))[0] == "edited on the parent")
    assert (
        result.stock_conflicts
        or parent.conflicts()
        or any(c["kind"] == "Job" for c in _shadow_conflicts(cluster, state, "A"))
    )


def _shadow_conflicts(cluster: Cluster, state: Path, name: str) -> List[Dict[str, Any]]:
    builder = StockReplicas(state)
    replica = builder(url_of(cluster, name), WMServerClient(url_of(cluster, name), user=USER))
    try:
        return replica.conflicts()
    finally:
        replica.close()
        builder.close()


def test_jobs_already_alike_on_stock_servers_are_matched_by_id(
    emulator: Any, tmp_path: Path
) -> None:
    """A cluster kept in step before (by Esri's own tool, or by a state store since
    lost) holds the same jobs under the same ids everywhere, with nothing of ours on
    them: a new state store matches them by id; nothing is renumbered or doubled, and
    where one copy differs the merge rule decides and the loser is logged."""
    cluster = make(emulator, *ALL, stock=ALL)
    for name in ALL:
        client = cluster.client(name)
        job(client, "shared", 5, description="same everywhere")
        job(client, "other", 6, priority=2)
    cluster.client("B").post("jobs/6/update", properties='{"name": "other, renamed on B"}')
    state = tmp_path / "state.sqlite"
    first = sync(cluster, state, ALL)
    assert first.status == 0
    assert sum(c.renumbered for c in first.children) == 0
    converge(cluster, state, ALL, runs=1)
    held = assert_converged(cluster)
    assert sorted(held) == [5, 6]
    assert held[5][0] == "shared"
    # Job 6 differed on B: one version won everywhere, the other is in a conflict log.
    names = {"other", "other, renamed on B"}
    assert held[6][0] in names
    logged = [c for c in first.conflicts if c.get("id") == 6]
    assert logged and all(c.get("kind") == "Job" for c in logged)
    assert not [c for c in first.conflicts if c.get("id") == 5]  # alike: no conflict
    before = snapshot_counts(cluster)
    converge(cluster, state, ALL, runs=1)
    assert snapshot_counts(cluster) == before
