"""The toolset's tools in WorkflowSync.pyt through the fake arcpy (loaded from the .pyt
file), against emulators on loopback: Cluster Status, Replicate Job Data, Clear Job
Replication Information; dialog validation with no network; chaining in a script."""

from __future__ import annotations

import pytest
from cluster import create_job, job_id_by_name, make_cluster
from fake_arcpy.fixtures import PYT, arcpy_fixture, toolbox_fixture  # noqa: F401

from wmsync.engine import synchronize
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

DEAD = "http://127.0.0.1:9/arcgis/rest/services/Gone/WMServer"


@pytest.fixture
def three(emulator, monkeypatch):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    assert synchronize(cluster.parent.url, "Parent", cluster.table(), user="tester").status == 0
    yield cluster
    cluster.close()


@pytest.fixture
def wmx(arcpy, monkeypatch):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    return arcpy.ImportToolbox(str(PYT), "wmx")


def node_names(client):
    return sorted(n["name"] for n in client.replication_info()["nodes"])


def test_the_toolbox_lists_the_toolset_with_esri_names(toolbox):
    names = [tool.__name__ for tool in toolbox.Toolbox().tools]
    assert names[0] == "SynchronizeJobData"
    assert {"CreateJobDataReplica", "ClearJobReplicationInfo", "ClusterStatus"} <= set(names)
    assert PYT.read_bytes().isascii()


def test_cluster_status_tool(three, wmx, arcpy):
    result = arcpy.ClusterStatus_wmx(three.parent.url, "Parent")
    assert result.getOutput(0) == "0"
    table = result.getOutput(1)
    assert "Parent parent 1-1000000" in table
    assert "Ohio child" in table and "AZ child" in table
    assert arcpy._fake.messages(2) == []
    assert any("healthy" in text for _, text in arcpy._fake.messages(0))
    assert arcpy._fake.progress[-1] == ("ResetProgressor",)
    old = wmx.ClusterStatus(three.parent.url, "Parent", 0.0000001)
    assert old.getOutput(0) == "1"
    assert any("longer ago than --max-age" in t for _, t in arcpy._fake.messages(1))


def test_cluster_status_of_an_unreachable_parent_fails_the_tool(wmx, arcpy):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.ClusterStatus_wmx(DEAD, "Gone")
    assert "parent Gone" in str(info.value)


def test_replicate_then_synchronize_in_a_script(three, emulator, wmx, arcpy):
    texas = emulator("Texas")
    from wmsync.client import WMServerClient

    with WMServerClient(texas.url, user="tester") as client:
        create_job(client, "from texas")
        joined = arcpy.CreateJobDataReplica_wmx(
            three.parent.url, "Parent", f"Texas true {texas.url}"
        )
        assert joined.getOutput(0) == "0"
        rows = parse_children(joined.getOutput(1))
        assert [(r.name, r.connected) for r in rows] == [("Texas", True)]
        assert rows[0].last_sync is not None
        assert job_id_by_name(three.client("Parent"), "from texas")
        # Chained: Last Synchronized goes straight into Synchronize Job Data.
        create_job(three.client("Parent"), "after the join")
        synced = arcpy.SynchronizeJobData_wmx(three.parent.url, "Parent", joined.getOutput(1))
        assert synced.getOutput(0) == "0"
        assert job_id_by_name(client, "after the join")


def test_replicate_a_child_of_another_cluster_fails_the_tool(three, emulator, wmx, arcpy):
    other = emulator("Other")
    with pytest.raises(arcpy.ExecuteError):
        arcpy.CreateJobDataReplica_wmx(other.url, "Other", f"Ohio true {three.children[0].url}")
    assert any("already belongs to the cluster of Parent" in t for _, t in arcpy._fake.messages(1))


def test_clear_a_child_then_the_whole_cluster(three, wmx, arcpy):
    one = arcpy.ClearJobReplicationInfo_wmx(three.parent.url, "Parent", "AZ")
    assert one.getOutput(0) == "0"
    assert node_names(three.client("Parent")) == ["Ohio", "Parent"]
    assert node_names(three.client("AZ")) == ["AZ"]
    whole = arcpy.ClearJobReplicationInfo_wmx(three.parent.url)  # a parent: its cluster
    assert whole.getOutput(0) == "0"
    assert node_names(three.client("Parent")) == ["Parent"]
    assert node_names(three.client("Ohio")) == ["Ohio"]


def test_clear_an_unknown_child_fails_and_changes_nothing(three, wmx, arcpy):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.ClearJobReplicationInfo_wmx(three.parent.url, "Parent", "Texas")
    assert "'Texas' is not a child of Parent" in str(info.value)
    assert node_names(three.client("Parent")) == ["AZ", "Ohio", "Parent"]


def test_dialogs_validate_urls_without_network(toolbox, arcpy):
    status = arcpy.ToolDialog(toolbox.ClusterStatus())
    status.set("Input_Parent_Repository_URL", "ftp://hq/WMServer")
    assert "not an http(s) URL" in status.errors()["Input_Parent_Repository_URL"]
    status.set("Input_Parent_Repository_URL", "http://hq/arcgis/rest/services/P")
    assert "does not end with /WMServer" in status.warnings()["Input_Parent_Repository_URL"]
    status.set("Input_Max_Age_Hours", 0)
    assert "more than 0 hours" in status.errors()["Input_Max_Age_Hours"]

    clear = arcpy.ToolDialog(toolbox.ClearJobReplicationInfo())
    clear.set("Input_Repository_URL", "hq/WMServer")
    assert "repository URL" in clear.errors()["Input_Repository_URL"]

    replica = arcpy.ToolDialog(toolbox.CreateJobDataReplica())
    replica.set("Input_Parent_Repository_URL", "ftp://hq/WMServer")
    assert "parent URL" in replica.errors()["Input_Parent_Repository_URL"]
    replica.set("Input_Multi_Name", "Ohio maybe http://ohio/arcgis/rest/services/O/WMServer")
    assert "Input_Multi_Name" in replica.errors()


def test_tools_refuse_bad_input_before_running(wmx, arcpy, emulator):
    with pytest.raises(arcpy.ExecuteError):
        arcpy.ClusterStatus_wmx("not a url", "P")
    with pytest.raises(arcpy.ExecuteError):
        arcpy.ClearJobReplicationInfo_wmx("ftp://x/WMServer")
    parent = emulator("Parent")
    with pytest.raises(arcpy.ExecuteError):
        arcpy.CreateJobDataReplica_wmx(parent.url, "Parent", f"Gone true {DEAD}")
    with pytest.raises(arcpy.ExecuteError):
        arcpy.CreateJobDataReplica_wmx(parent.url, "Parent", f"Gone false {DEAD}")
