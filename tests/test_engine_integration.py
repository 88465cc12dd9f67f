"""The engine against real emulators on loopback: real HTTP, real SQLite.

Every check reads the repositories through the documented REST API.
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import List

import pytest
from cluster import (
    assert_converged,
    create_job,
    generation,
    holdings,
    job_id_by_name,
    make_cluster,
)

from wmsync import SyncListener, plan, synchronize
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)


class Recorder(SyncListener):
    def __init__(self) -> None:
        self.infos: List[str] = []
        self.warnings: List[str] = []
        self.steps: List[str] = []
        self.done = 0
        self.total = 0

    def info(self, text: str) -> None:
        self.infos.append(text)

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def begin(self, total_steps: int, label: str) -> None:
        self.total = total_steps

    def step(self, label: str) -> None:
        self.steps.append(label)

    def step_done(self) -> None:
        self.done += 1


def sync(cluster, table=None, **options):
    return synchronize(
        cluster.parent.url,
        cluster.parent_name,
        table if table is not None else cluster.table(),
        user="tester",
        **options,
    )


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def moved(result) -> int:
    return sum(child.sent + child.received for child in result.children)


def test_first_run_registers_children_and_hands_out_disjoint_job_id_blocks(three):
    result = sync(three)
    assert result.status == 0, result.summary_lines()
    assert [c.state for c in result.children] == ["synchronized", "synchronized"]
    starts = {}
    for name in three.names:
        info = three.client(name).replication_info()
        own = next(n for n in info["nodes"] if n["name"] == name)
        starts[name] = own["jobIdStart"]
    assert len(set(starts.values())) == 3
    ohio_job = create_job(three.client("Ohio"), "numbered from Ohio's block")
    assert ohio_job >= starts["Ohio"]


def test_jobs_and_configuration_changed_everywhere_converge(three):
    sync(three)  # register the cluster
    parent, ohio, az = (three.client(n) for n in three.names)
    parent.post("jobTypes/create", name="Edit Data", description="parcels")
    parent_job = create_job(parent, "HQ review", priority=3)
    ohio.post("community/users/create", userName="ohio_editor", fullName="Ohio Editor")
    ohio.post("community/groups/create", name="Editors", users="admin,ohio_editor")
    ohio_job = create_job(ohio, "Ohio parcels")
    ohio.post(f"jobs/{ohio_job}/notes/update", notes="line one\nline two <&>")
    ohio.post(f"jobs/{ohio_job}/holds/create", type=1, comments="waiting for imagery")
    az_jobs = az.post("jobs/create", jobTypeId=1, name="AZ roads", numJobs=2)["jobIds"]
    az.post(f"jobs/{az_jobs[0]}/update", properties='{"name": "AZ roads north", "priority": "4"}')
    az.post(f"jobs/{az_jobs[1]}/delete")

    result = sync(three)
    assert result.status == 0, result.summary_lines()
    view = assert_converged(three)
    names = sorted(job[1] for job in view["jobs"].values())
    assert names == ["AZ roads north", "HQ review", "Ohio parcels"]
    by_name = {job[1]: job for job in view["jobs"].values()}
    assert by_name["HQ review"][0] == parent_job  # same id everywhere
    assert by_name["Ohio parcels"][7] == "line one\nline two <&>"
    assert by_name["Ohio parcels"][8] == ((1, "waiting for imagery", False),)
    assert by_name["AZ roads north"][3] == 4
    assert ("ohio_editor", "Ohio Editor") in view["users"]
    assert ("Editors", ("admin", "ohio_editor")) in view["groups"]
    assert sorted(t[0] for t in view["jobTypes"].values()) == ["Default", "Edit Data"]

    # Edits and deletes made after that converge too, from any node.
    ohio.post(
        f"jobs/{job_id_by_name(ohio, 'HQ review')}/update",
        properties='{"description": "edited in Ohio"}',
    )
    az.post(f"jobs/{job_id_by_name(az, 'Ohio parcels')}/delete")
    parent.post("community/users/ohio_editor/update", fullName="Ohio Editor (HQ)")
    result = sync(three)
    assert result.status == 0
    view = assert_converged(three)
    assert sorted(job[1] for job in view["jobs"].values()) == ["AZ roads north", "HQ review"]
    assert {job[1]: job[2] for job in view["jobs"].values()}["HQ review"] == "edited in Ohio"
    assert ("ohio_editor", "Ohio Editor (HQ)") in view["users"]


def test_a_second_run_moves_nothing_and_changes_no_generation(three):
    sync(three)
    create_job(three.client("Ohio"), "one")
    create_job(three.client("Parent"), "two")
    first = sync(three)
    assert first.status == 0 and moved(first) > 0
    before = {name: generation(three.client(name)) for name in three.names}
    second = sync(three, first.last_sync_text)
    assert second.status == 0
    assert moved(second) == 0, second.summary_lines()
    assert {name: generation(three.client(name)) for name in three.names} == before


def test_no_echo_a_childs_change_is_not_sent_back_to_it(three):
    sync(three)
    create_job(three.client("Ohio"), "from Ohio")
    result = sync(three)
    ohio, az = result.children
    assert (ohio.sent, ohio.received) == (2, 0)  # the job and its creation activity record
    assert (az.sent, az.received) == (0, 2)


def test_conflicting_edits_pick_one_winner_everywhere_and_log_the_loser(three):
    sync(three)
    job_id = create_job(three.client("Parent"), "contested")
    sync(three)
    three.client("Ohio").post(f"jobs/{job_id}/update", properties='{"description": "Ohio"}')
    three.client("AZ").post(f"jobs/{job_id}/update", properties='{"description": "AZ"}')
    result = sync(three)
    assert result.status == 0
    assert len(result.conflicts) == 1
    entry = result.conflicts[0]
    assert (entry["repository"], entry["kind"]) == ("Parent", "Job")
    assert (entry["winner"], entry["loser_origin"]) == ("AZ", "Ohio")
    # The report names the job as users know it, and what differs (not just a GUID).
    assert (entry["id"], entry["name"], entry["fields"]) == (job_id, "contested", ["description"])
    [line] = [text for text in result.summary_lines() if text.startswith("conflict")]
    assert f"Job {job_id} 'contested'" in line and "fields that differ: description" in line
    assert "kept the version from AZ" in line and "from Ohio is in the conflict log" in line
    assert sum(c.conflicts for c in result.children) == 1
    view = assert_converged(three)
    winner = next(job for job in view["jobs"].values() if job[1] == "contested")[2]
    assert winner == "AZ"  # written last, so the newer modified time wins
    logged = three.client("Parent").conflicts()
    assert [c["loser"]["content"].get("description") for c in logged] == ["Ohio"]
    assert moved(sync(three)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_child_that_is_down_fails_alone_and_keeps_its_old_time(three):
    sync(three)
    create_job(three.client("Ohio"), "still travels")
    dead = f"http://127.0.0.1:{_free_port()}/arcgis/rest/services/Gone/WMServer"
    table = three.table("2011-08-08 12:00") + f";Gone true {dead} 2011-08-08 12:00"
    listener = Recorder()
    result = sync(three, table, listener=listener)
    assert result.status == 1
    states = {c.name: c.state for c in result.children}
    assert states == {"Ohio": "synchronized", "AZ": "synchronized", "Gone": "failed"}
    rows = {row[0]: row for row in result.last_sync_rows}
    assert rows["Gone"][3] == "2011-08-08 12:00"
    assert rows["Ohio"][3] != "2011-08-08 12:00"
    assert any("Gone" in w and "127.0.0.1" in w for w in listener.warnings)
    assert "still travels" in [job[1] for job in holdings(three.client("AZ"))["jobs"].values()]
    # Steps are counted for the children that can run (no padding for "Gone").
    assert listener.done == listener.total == 4


def test_rows_not_connected_are_skipped_and_do_not_count(three):
    result = sync(three, three.table(connected={"AZ": "false"}))
    assert result.status == 0
    assert [c.state for c in result.children] == ["synchronized", "skipped"]
    assert result.last_sync_rows[1][1] == "false"


@pytest.mark.parametrize("case", ["wrong name", "parent down", "nothing connected", "bad table"])
def test_runs_that_cannot_start_return_minus_one_and_change_nothing(three, case):
    before = {name: generation(three.client(name)) for name in three.names}
    url, name, table = three.parent.url, three.parent_name, three.table()
    if case == "wrong name":
        name = "NotTheParent"
    elif case == "parent down":
        url = f"http://127.0.0.1:{_free_port()}/arcgis/rest/services/Parent/WMServer"
    elif case == "nothing connected":
        table = three.table(connected={"Ohio": "false", "AZ": "no"})
    else:
        table += ";Broken true ftp://nowhere 13/45/2020 10:00"
    result = synchronize(url, name, table, user="tester")
    assert result.status == -1
    assert result.error
    after = {name: generation(three.client(name)) for name in three.names}
    assert after == before
    assert all(
        not node.get("lastSyncGen")
        for n in three.names
        for node in three.client(n).replication_info()["nodes"]
    )


def test_plan_reports_what_would_move_and_changes_nothing(three):
    sync(three)
    create_job(three.client("Ohio"), "pending")
    before = {name: generation(three.client(name)) for name in three.names}
    planned = plan(three.parent.url, three.parent_name, three.table(), user="tester")
    assert planned.status == 0
    entries = {e.spec.name: e for e in planned.children}
    assert entries["Ohio"].pull == 2 and entries["AZ"].pull == 0
    assert {name: generation(three.client(name)) for name in three.names} == before
    assert sync(three).children[0].sent == 2  # the plan was exact for the pull


def test_last_synchronized_time_is_the_parents_stamp_in_the_rows_style(three):
    table = three.table("08/01/2013 11:30:45 AM")
    result = sync(three, table)
    assert result.status == 0
    stamped = result.children[0].last_sync
    assert stamped is not None
    text = result.last_sync_rows[0][3]
    assert text.endswith(("AM", "PM")) and "/" in text
    spec = parse_children(result.last_sync_text)[0]
    assert spec.last_sync == stamped.replace(microsecond=0)
    assert abs((datetime.now().astimezone() - stamped).total_seconds()) < 60


def test_row_time_never_narrows_what_is_sent_but_a_mismatch_is_reported(three):
    create_job(three.client("Ohio"), "made before any sync")
    listener = Recorder()
    result = sync(three, three.table("2030-01-01 00:00"), listener=listener)
    assert result.status == 0
    assert "made before any sync" in [j[1] for j in holdings(three.client("AZ"))["jobs"].values()]
    assert any("row time ignored" in w for w in listener.warnings)


def test_a_restored_child_gets_a_full_exchange(three):
    sync(three)
    create_job(three.client("Parent"), "after the backup")
    sync(three)
    # A restore from backup: the child forgets the pair's sync id and watermark.
    three.client("Ohio").reset_node("Parent")
    result = sync(three)
    assert result.children[0].full_exchange
    assert result.status == 0
    assert_converged(three)
    assert moved(sync(three)) == 0


def test_progress_has_one_step_per_child_per_phase(three):
    listener = Recorder()
    sync(three, listener=listener)
    assert listener.total == 4 and listener.done == 4
    assert sorted(listener.steps) == sorted(
        [
            "Ohio: sending changes to the parent",
            "AZ: sending changes to the parent",
            "Ohio: receiving changes from the parent",
            "AZ: receiving changes from the parent",
        ]
    )


def test_a_failed_push_is_redone_next_run_without_a_full_exchange(three):
    from wmsync.emulator.app import Fault

    sync(three)
    create_job(three.client("Parent"), "to be pushed")
    create_job(three.client("Ohio"), "pulled fine")
    three.children[0].app.faults.append(Fault("replication/import", "error", times=1))
    failed = sync(three)
    assert failed.status == 1
    ohio = failed.children[0]
    assert ohio.state == "failed" and "receiving" in (ohio.error or "")
    assert failed.last_sync_rows[0][3] == ""  # the row keeps its (empty) old time
    again = sync(three)
    assert again.status == 0
    assert not again.children[0].full_exchange
    assert again.children[0].sent == 0  # the pull's watermark had advanced
    assert again.children[0].received > 0
    assert_converged(three)


@pytest.mark.parametrize(
    ("parent_row", "child_row", "full", "expected"),
    [
        (None, None, False, (False, 0, 0)),
        ({"syncId": "a", "lastSyncGen": 5}, None, False, (False, 0, 0)),
        (
            {"syncId": "a", "lastSyncGen": 5},
            {"syncId": "b", "lastSyncGen": 7},
            False,
            (False, 0, 0),
        ),
        (
            {"syncId": None, "lastSyncGen": 5},
            {"syncId": None, "lastSyncGen": 7},
            False,
            (False, 0, 0),
        ),
        ({"syncId": "a", "lastSyncGen": 5}, {"syncId": "a", "lastSyncGen": 7}, False, (True, 5, 7)),
        (
            {"syncId": "a", "lastSyncGen": None},
            {"syncId": "a", "lastSyncGen": 7},
            False,
            (True, 0, 7),
        ),
        ({"syncId": "a", "lastSyncGen": 5}, {"syncId": "a", "lastSyncGen": 7}, True, (False, 0, 0)),
    ],
)
def test_watermarks_are_trusted_only_with_matching_sync_ids(parent_row, child_row, full, expected):
    from wmsync.pairrules import watermarks

    assert watermarks(parent_row, child_row, full) == expected


def test_cancel_stops_at_a_safe_point_and_the_next_run_finishes(three):
    class CancelAfterPulls(Recorder):
        def cancelled(self) -> bool:
            return any("receiving" in s for s in self.steps) or self.done >= 2

    sync(three)
    create_job(three.client("Ohio"), "made before the cancel")
    listener = CancelAfterPulls()
    result = sync(three, listener=listener)
    assert result.cancelled and result.to_dict()["cancelled"] is True
    assert result.status > 0
    assert any(w.startswith("Cancelled") for w in listener.warnings)
    assert all(row[3] == "" for row in result.last_sync_rows)  # no row advanced
    again = sync(three)
    assert again.status == 0 and not again.cancelled
    assert_converged(three)
