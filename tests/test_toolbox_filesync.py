"""Export Job Data / Import Job Data in WorkflowSync.pyt, through the fake arcpy (loaded
from the .pyt file) against emulators on loopback; and their metadata."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from cluster import create_job, job_id_by_name, make_cluster
from fake_arcpy.fixtures import PYT, arcpy_fixture  # noqa: F401

METADATA = PYT.parent / "metadata"


@pytest.fixture
def pair(emulator, monkeypatch):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    cluster = make_cluster(emulator, "HQ", "Office")
    yield cluster
    cluster.close()


@pytest.fixture
def wmx(arcpy, monkeypatch):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    return arcpy.ImportToolbox(str(PYT), "wmx")


def test_export_then_import_by_the_tools(arcpy, wmx, pair, tmp_path):
    hq, office = pair.parent, pair.children[0]
    job = create_job(pair.client("HQ"), "Survey bridge 7")
    out = tmp_path / "to_office.zip"
    exported = arcpy.ExportJobData_wmx(hq.url, "Office", str(out), True, office.url)
    # Outputs in parameter order: the file (chains into Import Job Data), the status.
    assert exported.getOutput(0) == str(out) and exported.getOutput(1) == "0"
    assert zipfile.is_zipfile(out)
    assert any("registered Office" in m for _, m in arcpy._fake.messages(0))
    imported = wmx.ImportJobData(exported.getOutput(0), office.url)
    assert imported.getOutput(0) == "0"
    assert job_id_by_name(pair.client("Office"), "Survey bridge 7") == job
    assert arcpy._fake.messages(2) == []


def test_a_script_chains_export_then_import_both_ways(arcpy, wmx, pair, tmp_path):
    hq, office = pair.parent, pair.children[0]
    arcpy.ExportJobData_wmx(hq.url, "Office", str(tmp_path / "j.zip"), True)
    arcpy.ImportJobData_wmx(str(tmp_path / "j.zip"), office.url)
    create_job(pair.client("Office"), "Office work")
    folder = tmp_path / "outbox"
    folder.mkdir()
    arcpy.ExportJobData_wmx(office.url, "HQ", str(folder))
    (written,) = list(folder.iterdir())
    assert written.name.startswith("Office_to_HQ_")
    result = arcpy.ImportJobData_wmx(str(written), hq.url)
    assert int(result.getOutput(0)) == 0
    assert job_id_by_name(pair.client("HQ"), "Office work") > 1_000_000


def test_a_refused_file_fails_the_tool_and_changes_nothing(arcpy, wmx, pair, tmp_path):
    hq, office = pair.parent, pair.children[0]
    arcpy.ExportJobData_wmx(hq.url, "Office", str(tmp_path / "j.zip"), True)
    data = (tmp_path / "j.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    before = office.store.fingerprint(), [n.to_dict() for n in office.store.nodes()]
    with pytest.raises(arcpy.ExecuteError):
        arcpy.ImportJobData_wmx(str(tmp_path / "cut.zip"), office.url)
    assert any("nothing changed" in m for _, m in arcpy._fake.messages(2))
    assert (office.store.fingerprint(), [n.to_dict() for n in office.store.nodes()]) == before
    with pytest.raises(arcpy.ExecuteError):  # not registered, not asked to: refused
        arcpy.ExportJobData_wmx(hq.url, "Nobody", str(tmp_path / "n.zip"))
    assert not (tmp_path / "n.zip").exists()


@pytest.mark.parametrize("tool", ["ExportJobData", "ImportJobData"])
def test_metadata_describes_every_parameter(arcpy, tool):
    from fake_arcpy import load_toolbox

    module = load_toolbox(arcpy, str(PYT))
    tool_class = getattr(module, tool)
    root = ET.parse(METADATA / f"WorkflowSync.{tool}.pyt.xml").getroot()
    element = root.find("tool")
    assert element.get("name") == tool and element.get("toolboxalias") == "wmx"
    assert element.get("displayname") == tool_class().label
    names = [p.name for p in tool_class().getParameterInfo()]
    assert [p.get("name") for p in root.findall("tool/parameters/param")] == names
    code = root.findtext("tool/scriptExamples/scriptExample/code")
    assert f"arcpy.{tool}_wmx(" in code


def test_the_metadata_sample_runs(arcpy, monkeypatch, pair, tmp_path, capsys):
    monkeypatch.setenv("WMSYNC_USER", "tester")
    hq, office = pair.parent, pair.children[0]
    arcpy.ImportToolbox(str(PYT), "wmx")
    arcpy.ExportJobData_wmx(hq.url, "Office", str(tmp_path / "j.zip"), True)
    arcpy.ImportJobData_wmx(str(tmp_path / "j.zip"), office.url)
    root = ET.parse(METADATA / "WorkflowSync.ExportJobData.pyt.xml").getroot()
    code = root.findtext("tool/scriptExamples/scriptExample/code")
    code = (
        code.replace(r"C:\Tools\WorkflowSync\WorkflowSync.pyt", os.fspath(PYT))
        .replace("http://office/arcgis/rest/services/Office/WMServer", office.url)
        .replace("http://hq/arcgis/rest/services/HQ/WMServer", hq.url)
        .replace(r"E:\to_hq.zip", os.fspath(tmp_path / "to_hq.zip"))
    )
    exec(compile(code, "sample", "exec"), {})
    assert capsys.readouterr().out.strip() == "0"


def test_the_pyt_stays_ascii():
    Path(PYT).read_bytes().decode("ascii")
