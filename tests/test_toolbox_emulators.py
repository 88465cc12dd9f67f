"""WorkflowSync.pyt end to end: the fake arcpy runs the real tool against emulators on loopback.

Scripts call it as after ``arcpy.ImportToolbox(path, "wmx")``; what moved is checked
through the WMServer REST API, the way a Workflow Manager user would see it.
"""

from __future__ import annotations

import socket

import pytest
from cluster import create_job, generation, job_id_by_name, make_cluster
from fake_arcpy.fixtures import PYT, arcpy_fixture  # noqa: F401

from wmsync.valuetable import parse_children, parse_time

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

OLD = "2011-08-08 12:00"


@pytest.fixture
def three(emulator, monkeypatch):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


@pytest.fixture
def wmx(arcpy, monkeypatch):
    """The tool as a script sees it after ``arcpy.ImportToolbox(..., "wmx")``."""
    monkeypatch.setenv("WMSYNC_USER", "tester")
    arcpy.ImportToolbox(str(PYT), "wmx")
    return arcpy.SynchronizeJobData_wmx


def esri_style_table(cluster, time=OLD):
    """Esri's sample form: unquoted date-time at the end of each row."""
    return ";".join(f"{cluster.name_of(c)} true {c.url} {time}" for c in cluster.children)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_three_emulators_synchronize_and_chain_like_a_model(arcpy, wmx, three):
    first = wmx(three.parent.url, "Parent", esri_style_table(three))
    assert first.getOutput(0) == "0"
    rows = parse_children(first.getOutput(1))
    assert [(r.name, r.connected_text, r.url) for r in rows] == [
        ("Ohio", "true", three.children[0].url),
        ("AZ", "true", three.children[1].url),
    ]
    for row in rows:
        assert row.time_text != OLD and parse_time(row.time_text)[0] is not None
    assert arcpy._fake.messages(2) == []
    calls = arcpy._fake.progress
    assert calls[0][:2] == ("SetProgressor", "step") and calls[0][3:5] == (0, 4)
    assert sum(1 for c in calls if c[0] == "SetProgressorPosition") == 4
    assert calls[-1] == ("ResetProgressor",)
    labels = [c[1] for c in calls if c[0] == "SetProgressorLabel"]
    # The phase and how many children finished it, not the last child heard from.
    assert labels[0] == "Pulling: 0 of 2 children" and labels[-1] == "Pushing: 2 of 2 children"
    assert "Pulling: 2 of 2 children" in labels
    assert not any("Ohio" in label or "AZ" in label for label in labels)

    # A job made on one child reaches the parent and the other child.
    job = create_job(three.client("Ohio"), "Inspect culvert 12")
    second = wmx(three.parent.url, "Parent", first.getOutput(1))  # chained: Last Synchronized
    assert second.getOutput(0) == "0"
    assert job_id_by_name(three.client("Parent"), "Inspect culvert 12") == job
    assert job_id_by_name(three.client("AZ"), "Inspect culvert 12") == job

    # Chained once more, as a model or a scheduled script would: nothing moves.
    before = {name: generation(three.client(name)) for name in three.names}
    third = wmx(three.parent.url, "Parent", second.getOutput(1))
    assert third.getOutput(0) == "0"
    assert {name: generation(three.client(name)) for name in three.names} == before
    assert arcpy._fake.messages(1) == []


def test_a_child_down_gives_status_1_a_warning_and_keeps_its_old_time(arcpy, wmx, three):
    wmx(three.parent.url, "Parent", esri_style_table(three))
    create_job(three.client("AZ"), "still travels")
    dead = f"http://127.0.0.1:{free_port()}/arcgis/rest/services/Gone/WMServer"
    table = esri_style_table(three) + f";Gone true {dead} {OLD}"
    result = wmx(three.parent.url, "Parent", table)
    assert result.getOutput(0) == "1"
    rows = {r.name: r for r in parse_children(result.getOutput(1))}
    assert rows["Gone"].time_text == OLD
    assert rows["Ohio"].time_text != OLD and rows["AZ"].time_text != OLD
    warnings = [text for severity, text in arcpy._fake.messages() if severity == 1]
    assert any("Gone" in w and "127.0.0.1" in w for w in warnings)
    assert arcpy._fake.messages(2) == []  # a failed child is a warning, not an error
    assert result.maxSeverity == 1
    job_id_by_name(three.client("Ohio"), "still travels")


def test_wrong_parent_name_is_status_minus_1_and_execute_error(arcpy, wmx, three):
    before = {name: generation(three.client(name)) for name in three.names}
    with pytest.raises(arcpy.ExecuteError) as info:
        wmx(three.parent.url, "NotTheParent", esri_style_table(three))
    assert "NotTheParent" in str(info.value)
    assert "NotTheParent" in arcpy.GetMessages(2)
    assert arcpy._fake.progress[-1] == ("ResetProgressor",)
    assert {name: generation(three.client(name)) for name in three.names} == before


def test_signin_token_is_used_and_never_shown(arcpy, wmx, emulator, monkeypatch):
    secret = "portal-token-5f2c9a1e7b"
    monkeypatch.setenv("WMSYNC_USER", "tester")
    parent = emulator("Parent", token=secret)
    child = emulator("Ohio", token=secret)
    table = f"Ohio true {child.url} {OLD}"

    arcpy._fake.set_signin_token(secret)
    assert wmx(parent.url, "Parent", table).getOutput(0) == "0"

    arcpy._fake.set_signin_token(None)
    monkeypatch.setenv("WMSYNC_TOKEN", "wrong-" + secret)
    with pytest.raises(arcpy.ExecuteError) as info:
        wmx(parent.url + "?token=" + secret, "Parent", table)
    assert secret not in str(info.value)
    assert secret not in arcpy._fake.all_text()


def test_cancel_stops_at_a_safe_point_and_ends_the_tool_as_cancelled(arcpy, wmx, three):
    arcpy._fake.cancel_after(2)  # Cancel pressed once both pulls are done
    with pytest.raises(arcpy.ExecuteError) as info:
        wmx(three.parent.url, "Parent", esri_style_table(three))
    # A cancelled tool fails, as Pro's own do: a script or model never takes it for done.
    assert arcpy._fake.runs[-1].status == "cancelled"
    assert "Cancelled: 0 of 2 connected children synchronized" in str(info.value)
    assert any("cancelled" in text.lower() for _, text in arcpy._fake.messages(1))
    assert arcpy.env.autoCancelling is True  # restored after the run
    again = wmx(three.parent.url, "Parent", esri_style_table(three))  # the next run completes
    assert again.getOutput(0) == "0"
