"""Stock servers end to end, at the boundaries users hit: ``wmsync sync``/``plan`` as a
subprocess and the toolbox through the fake arcpy, against emulators in stock mode
(Esri's documented operations only) on loopback (docs/design.md §10, docs/stock.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from cluster import USER, Cluster
from fake_arcpy.fixtures import PYT, arcpy_fixture  # noqa: F401
from test_stock import (  # the stock tests' cluster helpers
    ALL,
    BLOCK,
    add_job_type,
    assert_converged,
    fill,
    job,
    make,
    snapshot_counts,
    view,
)
from test_stock import (
    counts as counts_of,
)

from wmsync.progress import SyncListener

MIXED = [ALL, ("A", "B"), ("P",)]
MIXED_IDS = ["all-stock", "extension-parent-stock-children", "stock-parent-extension-children"]


def run_cli(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 180) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def cli_sync(cluster: Cluster, state: Path, *extra: str, command: str = "sync") -> Any:
    return run_cli(
        command,
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        cluster.parent_name,
        "--children",
        cluster.table(),
        "--user",
        USER,
        "--state",
        str(state),
        *extra,
    )


def report_of(path: Path) -> Dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("stock", MIXED, ids=MIXED_IDS)
def test_cli_converges_a_stock_or_mixed_cluster_and_a_second_run_writes_nothing(
    emulator: Any, tmp_path: Path, stock: Tuple[str, ...]
) -> None:
    cluster = make(emulator, *ALL, stock=stock)
    fill(cluster)
    state = tmp_path / "state" / "state.sqlite"  # its folder is made by the run
    report = tmp_path / "report.json"
    done = cli_sync(cluster, state, "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    payload = report_of(report)
    kinds = {c["name"]: c["kind"] for c in payload["children"]}
    kinds[payload["parent"]["name"]] = payload["parent"]["kind"]
    assert kinds == {n: "stock" if n in stock else "extensions" for n in ALL}
    for name in ("A", "B"):
        line = next(line for line in done.stdout.splitlines() if line.startswith(f"{name}: "))
        assert ("(stock server)" in line) == (name in stock), line
    held = assert_converged(cluster)
    assert len(held) == 6
    assert state.exists()
    before = snapshot_counts(cluster)
    again = cli_sync(cluster, state)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot_counts(cluster) == before  # jobs, holds, activity: nothing written
    assert_converged(cluster)


def test_cli_plan_counts_a_stock_cluster_and_changes_nothing(emulator: Any, tmp_path: Path) -> None:
    cluster = make(emulator, *ALL, stock=ALL)
    fill(cluster)
    before = snapshot_counts(cluster)
    report = tmp_path / "plan.json"
    done = cli_sync(cluster, tmp_path / "state.sqlite", "--report", str(report), command="plan")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(stock server)" in done.stdout
    entries = report_of(report)["children"]
    assert [e["kind"] for e in entries] == ["stock", "stock"]
    assert all(e["pull"] > 0 for e in entries)
    assert snapshot_counts(cluster) == before


def test_cli_rebuilds_a_deleted_state_store_without_duplicates(
    emulator: Any, tmp_path: Path
) -> None:
    cluster = make(emulator, *ALL, stock=ALL)
    fill(cluster)
    state = tmp_path / "st" / "state.sqlite"
    for _ in range(2):
        done = cli_sync(cluster, state)
        assert done.returncode == 0, done.stdout + done.stderr
    before = snapshot_counts(cluster)
    converged = assert_converged(cluster)
    for path in sorted(state.parent.rglob("*"), reverse=True):  # the whole store
        path.rmdir() if path.is_dir() else path.unlink()
    for _ in range(2):
        done = cli_sync(cluster, state)
        assert done.returncode == 0, done.stdout + done.stderr
    assert state.exists()
    assert assert_converged(cluster) == converged
    assert snapshot_counts(cluster) == before  # nothing duplicated, nothing re-logged
    cluster.client("B").post(f"jobs/{2 * BLOCK + 1}/update", properties='{"name": "later"}')
    done = cli_sync(cluster, state)
    assert done.returncode == 0
    assert assert_converged(cluster)[2 * BLOCK + 1][0] == "later"


def test_cli_a_job_type_only_on_the_parent_waits_then_arrives(
    emulator: Any, tmp_path: Path
) -> None:
    cluster = make(emulator, *ALL, stock=ALL)
    state = tmp_path / "state.sqlite"
    assert cli_sync(cluster, state).returncode == 0
    type_id = add_job_type(cluster, "P", "Edit Data")  # a restart with --config
    job(cluster.client("P"), "needs Edit Data", 50, jobTypeId=type_id)
    report = tmp_path / "r.json"
    done = cli_sync(cluster, state, "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("A", "B"):
        said = [line for line in done.stderr.splitlines() if "Edit Data" in line and name in line]
        assert said and "Workflow Manager Administrator" in said[0], done.stderr
        assert 50 not in view(cluster.client(name))
    assert sum("Edit Data" in w for w in report_of(report)["warnings"]) == 2
    for name in ("A", "B"):
        add_job_type(cluster, name, "Edit Data")
    done = cli_sync(cluster, state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Edit Data" not in done.stderr
    assert assert_converged(cluster)[50][6] == "Edit Data"


def test_cli_refuses_a_state_path_whose_folder_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run_cli(
        "sync",
        "--parent-url",
        "http://127.0.0.1:9/arcgis/rest/services/P/WMServer",
        "--parent-name",
        "P",
        "--children",
        "A true http://127.0.0.1:9/x ''",
        "--state",
        str(blocker / "sub" / "state.sqlite"),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--state" in lines[0] and "cannot be created" in lines[0]
    assert not (blocker.parent / "sub").exists()


def test_cli_default_state_is_wmsync_state(emulator: Any, tmp_path: Path) -> None:
    cluster = make(emulator, "P", "A", stock=("A",))
    state = tmp_path / "from-env" / "state.sqlite"
    done = run_cli(
        "sync",
        "--parent-url",
        cluster.parent.url,
        "--parent-name",
        "P",
        "--children",
        cluster.table(),
        "--user",
        USER,
        env={"WMSYNC_STATE": str(state)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert state.exists()


def test_sync_help_documents_state() -> None:
    done = run_cli("sync", "--help")
    assert "--state" in done.stdout and "WMSYNC_STATE" in done.stdout


def test_demo_stock(tmp_path: Path) -> None:
    done = run_cli("demo", "--stock", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: all three stock servers hold the same" in done.stdout
    assert "(stock server)" in done.stdout


# --------------------------------------------------------------------------- toolbox


@pytest.fixture
def wmx(arcpy: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("WMSYNC_USER", USER)
    arcpy.ImportToolbox(str(PYT), "wmx")
    return arcpy.SynchronizeJobData_wmx


@pytest.mark.parametrize("stock", [ALL, ("A", "B")], ids=["all-stock", "stock-children"])
def test_toolbox_synchronizes_stock_servers(
    arcpy: Any,
    wmx: Any,
    emulator: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stock: Tuple[str, ...],
) -> None:
    state = tmp_path / "tool-state" / "state.sqlite"
    monkeypatch.setenv("WMSYNC_STATE", str(state))
    cluster = make(emulator, *ALL, stock=stock)
    fill(cluster)
    first = wmx(cluster.parent.url, "P", cluster.table())
    assert first.getOutput(0) == "0", arcpy._fake.messages(2)
    assert state.exists()
    assert len(assert_converged(cluster)) == 6
    before = snapshot_counts(cluster)
    again = wmx(cluster.parent.url, "P", first.getOutput(1))
    assert again.getOutput(0) == "0"
    assert snapshot_counts(cluster) == before


def test_toolbox_reads_per_server_tokens_from_wmsync_credentials(
    arcpy: Any, wmx: Any, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One cluster across offices, each with its own ArcGIS Server (and token)."""
    from test_stock import start_stock_server

    from wmsync.client import WMServerClient

    tokens = {"P": "parent-secret-1", "A": "ohio-secret-2"}
    servers = {name: start_stock_server(emulator, name, token=tokens[name]) for name in tokens}
    entries = []
    for name, server in servers.items():
        monkeypatch.setenv(f"TOKEN_{name}", tokens[name])
        prefix = server.url.split("/arcgis")[0]
        entries.append({"url": prefix, "token_env": f"TOKEN_{name}"})
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"servers": entries}), encoding="utf-8")
    monkeypatch.setenv("WMSYNC_CREDENTIALS", str(creds))
    monkeypatch.setenv("WMSYNC_STATE", str(tmp_path / "state.sqlite"))
    child = WMServerClient(servers["A"].url, user=USER, token=tokens["A"])
    job(child, "from Ohio", BLOCK + 1)
    result = wmx(servers["P"].url, "P", f"A true {servers['A'].url} ''")
    assert result.getOutput(0) == "0", arcpy._fake.messages(2)
    parent = WMServerClient(servers["P"].url, user=USER, token=tokens["P"])
    names = [parent.get(f"jobs/{i}")["name"] for i in parent.get("jobs")["jobIds"]]
    assert names == ["from Ohio"]
    every = arcpy._fake.all_text()
    assert all(secret not in every for secret in tokens.values())
    parent.close()
    child.close()


# --------------------------------------------------------------------------- the engine


class _CancelAtOnce(SyncListener):
    def cancelled(self) -> bool:
        return True


def test_a_cancelled_run_releases_its_stock_repositories(emulator: Any, tmp_path: Path) -> None:
    """The run closes its builder whatever happens: a cancelled run's locks are free at
    once for the next run (which would otherwise wait, then fail those repositories)."""
    from wmsync.client import WMServerClient
    from wmsync.engine import synchronize
    from wmsync.stock import StockReplicas

    cluster = make(emulator, "P", "A", stock=("P", "A"))
    fill(cluster)
    state = tmp_path / "state.sqlite"
    builder = StockReplicas(state)
    result = synchronize(
        cluster.parent.url, "P", cluster.table(), user=USER, listener=_CancelAtOnce(), state=builder
    )
    assert result.cancelled and result.status != 0
    assert result.parent_kind == "stock"
    after = StockReplicas(state, lock_timeout=0.2)
    for server in (cluster.parent, *cluster.children):
        replica = after(server.url, WMServerClient(server.url, user=USER))
        replica.close()
    after.close()
    assert snapshot_counts(cluster)["A"][0] == 2  # its own jobs: nothing written to it


def test_a_state_store_that_cannot_be_opened_fails_only_the_stock_children(
    emulator: Any, tmp_path: Path
) -> None:
    from wmsync.engine import synchronize

    cluster = make(emulator, *ALL, stock=("B",))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = synchronize(
        cluster.parent.url, "P", cluster.table(), user=USER, state=blocker / "state.sqlite"
    )
    assert result.status == 1
    by_name = {c.name: c for c in result.children}
    assert by_name["A"].state == "synchronized" and by_name["A"].kind == "extensions"
    assert by_name["B"].state == "failed"
    assert "state store" in str(by_name["B"].error) and "a-file" in str(by_name["B"].error)


# --------------------------------------------------------------------------- processes


def _serve_stock(name: str, folder: Path, config: Path, port: int = 0) -> Tuple[Any, str]:
    """``wmsync serve --stock --config FILE`` as a process; (process, its URL)."""
    import select

    command = [
        sys.executable,
        "-m",
        "wmsync",
        "serve",
        "--repository",
        name,
        "--db",
        str(folder / f"{name}.sqlite"),
        "--port",
        str(port),
        "--stock",
        "--config",
        str(config),
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
        raise AssertionError(f"{name}: no URL line within 30 s")
    return proc, proc.stdout.readline().decode().strip()


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def test_three_stock_server_processes_and_a_job_type_an_administrator_adds_later(
    tmp_path: Path,
) -> None:
    """Three ``wmsync serve --stock`` processes; a job type only the parent has makes the
    children's copies of its job wait (one warning per child, saying what to create in
    Workflow Manager Administrator); restarting them with a --config that adds the type
    lets the job arrive, and a further run writes nothing."""
    from wmsync.client import WMServerClient

    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"jobTypes": []}), encoding="utf-8")
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"jobTypes": [{"name": "Edit Data"}]}), encoding="utf-8")
    procs: Dict[str, Any] = {}
    urls: Dict[str, str] = {}
    try:
        for name in ALL:
            procs[name], urls[name] = _serve_stock(name, tmp_path, edit if name == "P" else plain)
        table = ";".join(f"{n} true {urls[n]} ''" for n in ("A", "B"))
        state = tmp_path / "state.sqlite"

        def sync() -> Any:
            return run_cli(
                "sync",
                "--parent-url",
                urls["P"],
                "--parent-name",
                "P",
                "--children",
                table,
                "--user",
                USER,
                "--state",
                str(state),
            )

        first = sync()  # the cluster is connected (registration, id blocks)
        assert first.returncode == 0, first.stdout + first.stderr
        with WMServerClient(urls["P"], user=USER) as parent:
            types = {t["name"]: t["id"] for t in parent.get("")["jobTypes"]}
            job(parent, "needs Edit Data", 50, jobTypeId=types["Edit Data"])
            job(parent, "plain", 51)
        done = sync()
        assert done.returncode == 0, done.stdout + done.stderr
        for name in ("A", "B"):
            said = [line for line in done.stderr.splitlines() if "Edit Data" in line]
            assert any(
                name in line and "Workflow Manager Administrator" in line for line in said
            ), done.stderr
            with WMServerClient(urls[name], user=USER) as child:
                assert sorted(child.get("jobs")["jobIds"]) == [51]
        for name in ("A", "B"):  # the administrator adds the type: a restart
            port = int(urls[name].split(":")[2].split("/")[0])
            _stop(procs[name])
            procs[name], again = _serve_stock(name, tmp_path, edit, port)
            assert again == urls[name]
        done = sync()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Edit Data" not in done.stderr
        held = {}
        for name in ALL:
            with WMServerClient(urls[name], user=USER) as client:
                held[name] = view(client)
                assert held[name][50][6] == "Edit Data", name
        assert held["A"] == held["P"] == held["B"]
        before = {}
        for name in ALL:
            with WMServerClient(urls[name], user=USER) as client:
                before[name] = counts_of(client)
        assert sync().returncode == 0
        for name in ALL:
            with WMServerClient(urls[name], user=USER) as client:
                assert counts_of(client) == before[name], name
    finally:
        for proc in procs.values():
            _stop(proc)


def test_toolbox_warns_about_a_job_type_a_stock_child_lacks(
    arcpy: Any, wmx: Any, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WMSYNC_STATE", str(tmp_path / "state.sqlite"))
    cluster = make(emulator, *ALL, stock=ALL)
    assert wmx(cluster.parent.url, "P", cluster.table()).getOutput(0) == "0"
    type_id = add_job_type(cluster, "P", "Edit Data")
    job(cluster.client("P"), "needs Edit Data", 50, jobTypeId=type_id)
    result = wmx(cluster.parent.url, "P", cluster.table())
    assert result.getOutput(0) == "0"  # the run succeeded; the job waits
    warnings = [text for _, text in arcpy._fake.messages(1) if "Edit Data" in text]
    assert len(warnings) == 2, warnings  # once per child and run
    for name in ("A", "B"):
        assert any(
            f"missing on {name}" in w and "Workflow Manager Administrator" in w for w in warnings
        ), warnings
        assert 50 not in view(cluster.client(name))
