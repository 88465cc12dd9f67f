"""The toolbox's item descriptions (metadata/*.pyt.xml): well-formed, complete, runnable samples.

ArcGIS Pro reads ``<Toolbox>.pyt.xml`` and ``<Toolbox>.<ToolClass>.pyt.xml`` from the
folder of the ``.pyt`` (docs/toolbox.md section 6); the sources live
in ``metadata/`` and ``wmsync install-toolbox`` copies them beside the ``.pyt``.
"""

from __future__ import annotations

import html
import os
import re

import pytest
from fake_arcpy.fixtures import PYT, ROOT, arcpy_fixture, toolbox_fixture  # noqa: F401
from lxml import etree

import wmsync.engine
from wmsync.report import SYNCHRONIZED, ChildResult, SyncResult
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

METADATA = ROOT / "metadata"
TOOLBOX_XML = METADATA / "WorkflowSync.pyt.xml"
TOOL_XML = METADATA / "WorkflowSync.SynchronizeJobData.pyt.xml"

DATATYPES = {
    "GPString": "String",
    "GPLong": "Long",
    "GPValueTable": "Value Table",
    "GPDouble": "Double",
}


def parse(path):
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(path), parser).getroot()


def text_of(rich: str) -> str:
    """The plain text of an escaped-HTML rich text field."""
    return re.sub(r"<[^>]+>", " ", html.unescape(rich or "")).strip()


@pytest.mark.parametrize("path", [TOOLBOX_XML, TOOL_XML], ids=lambda p: p.name)
def test_metadata_is_well_formed_and_named_after_the_pyt(path):
    root = parse(path)
    assert root.tag == "metadata"
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert path.name.startswith(PYT.stem + ".")
    assert root.find("distInfo/distributor/distorFormat/formatName").text in (
        "ArcToolbox Toolbox",
        "ArcToolbox Tool",
    )


def test_toolbox_description():
    root = parse(TOOLBOX_XML)
    box = root.find("toolbox")
    assert (box.get("name"), box.get("alias")) == ("WorkflowSync", "wmx")
    assert root.findtext("dataIdInfo/idCitation/resTitle") == "Workflow Sync"
    assert text_of(root.findtext("dataIdInfo/idAbs"))
    assert root.findtext("distInfo/distributor/distorFormat/formatName") == "ArcToolbox Toolbox"


def test_tool_file_names_the_tool_class(toolbox):
    tool = parse(TOOL_XML).find("tool")
    assert tool.get("name") == toolbox.SynchronizeJobData.__name__
    assert tool.get("toolboxalias") == toolbox.Toolbox().alias
    assert tool.get("displayname") == toolbox.SynchronizeJobData().label


def test_every_parameter_is_described(toolbox):
    params = toolbox.SynchronizeJobData().getParameterInfo()
    described = parse(TOOL_XML).findall("tool/parameters/param")
    assert [d.get("name") for d in described] == [p.name for p in params]
    for d, p in zip(described, params):
        assert d.get("displayname") == p.displayName
        assert d.get("type") == p.parameterType
        assert d.get("direction") == p.direction
        assert d.get("datatype") == DATATYPES[p.datatype]
        assert text_of(d.findtext("dialogReference")), p.name
        assert text_of(d.findtext("pythonReference")), p.name


def test_summary_usage_and_search_keys():
    root = parse(TOOL_XML)
    assert "parent" in text_of(root.findtext("tool/summary"))
    usage = text_of(root.findtext("tool/usage"))
    for word in ("connected", "warning", "-1", "WMSYNC_TOKEN", "wmsync"):
        assert word in usage
    # Who acts, how Cancel ends the tool, what the progressor says (the tool's behaviour).
    for words in (
        "WMSYNC_USER environment variable, else the user signed in to the computer",
        "ends as cancelled",
        "Pulling: 2 of 3 children",
        "child URL that does not end with /WMServer",
    ):
        assert words in usage
    assert root.findall("dataIdInfo/searchKeys/keyword")
    assert root.find("mdHrLv/ScopeCd").get("value") == "005"


def test_code_samples_use_the_wmx_alias():
    codes = [
        e.findtext("code") for e in parse(TOOL_XML).findall("tool/scriptExamples/scriptExample")
    ]
    assert len(codes) == 2
    assert all(
        'arcpy.ImportToolbox(r"C:\\Tools\\WorkflowSync\\WorkflowSync.pyt", "wmx")' in c
        for c in codes
    )
    assert "arcpy.SynchronizeJobData_wmx(" in codes[0]
    assert "arcpy.wmx.SynchronizeJobData(" in codes[1]


def _stand_in(parent_url, parent_name, children, **kwargs):
    results = [
        ChildResult(spec, state=SYNCHRONIZED, last_sync=None) for spec in parse_children(children)
    ]
    return SyncResult(0, parent_name, parent_url, None, None, results)


def test_first_code_sample_runs(arcpy, monkeypatch, capsys):
    monkeypatch.setattr(wmsync.engine, "synchronize", _stand_in)
    code = parse(TOOL_XML).findtext("tool/scriptExamples/scriptExample/code")
    code = code.replace(r"C:\Tools\WorkflowSync\WorkflowSync.pyt", os.fspath(PYT))
    exec(compile(code, "sample1", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("0 Ohio_Repository true ")


def test_second_code_sample_runs(arcpy, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(wmsync.engine, "synchronize", _stand_in)
    table = tmp_path / "children.txt"
    table.write_text("Ohio true http://ohio/arcgis/rest/services/SO/WMServer 2011-08-08 12:00\n")
    code = parse(TOOL_XML).findall("tool/scriptExamples/scriptExample")[1].findtext("code")
    code = code.replace(r"C:\Tools\WorkflowSync\WorkflowSync.pyt", os.fspath(PYT))
    code = code.replace(r"C:\Tools\WorkflowSync\children.txt", os.fspath(table))
    exec(compile(code, "sample2", "exec"), {})
    assert table.read_text() == (
        "Ohio true http://ohio/arcgis/rest/services/SO/WMServer '2011-08-08 12:00'"
    )


def test_install_places_metadata_beside_the_pyt(tmp_path):
    """What must travel together: the .pyt, both .pyt.xml files and the wmsync package."""
    from wmsync.install import install_toolbox

    pyt = install_toolbox(os.fspath(tmp_path / "WorkflowSync"))
    folder = os.path.dirname(pyt)
    names = set(os.listdir(folder))
    assert {"WorkflowSync.pyt", TOOLBOX_XML.name, TOOL_XML.name, "wmsync"} <= names


# --------------------------------------------------------------------------- the toolset

TOOLSET = ["CreateJobDataReplica", "ClearJobReplicationInfo", "ClusterStatus"]


def tool_xml(name):
    return METADATA / f"WorkflowSync.{name}.pyt.xml"


@pytest.mark.parametrize("name", TOOLSET)
def test_toolset_metadata_describes_each_tool_and_parameter(toolbox, name):
    path = tool_xml(name)
    root = parse(path)
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    tool_class = getattr(toolbox, name)
    tool = root.find("tool")
    assert (tool.get("name"), tool.get("toolboxalias")) == (name, "wmx")
    assert tool.get("displayname") == tool_class().label
    assert root.findtext("dataIdInfo/idCitation/resTitle") == tool_class().label
    params = tool_class().getParameterInfo()
    described = root.findall("tool/parameters/param")
    assert [d.get("name") for d in described] == [p.name for p in params]
    for d, p in zip(described, params):
        assert d.get("displayname") == p.displayName
        assert (d.get("type"), d.get("direction")) == (p.parameterType, p.direction)
        assert d.get("datatype") == DATATYPES[p.datatype]
        assert text_of(d.findtext("dialogReference")), p.name
        assert text_of(d.findtext("pythonReference")), p.name
    assert text_of(root.findtext("tool/summary"))
    assert "WMSYNC_TOKEN" in text_of(root.findtext("tool/usage"))
    code = root.findtext("tool/scriptExamples/scriptExample/code")
    assert 'arcpy.ImportToolbox(r"C:\\Tools\\WorkflowSync\\WorkflowSync.pyt", "wmx")' in code
    assert f"arcpy.{name}_wmx(" in code


def _sample(name, replacements):
    code = parse(tool_xml(name)).findtext("tool/scriptExamples/scriptExample/code")
    code = code.replace(r"C:\Tools\WorkflowSync\WorkflowSync.pyt", os.fspath(PYT))
    for old, new in replacements.items():
        assert old in code
        code = code.replace(old, new)
    return code


def test_toolset_code_samples_run(arcpy, emulator, monkeypatch, capsys):
    from cluster import make_cluster

    from wmsync.engine import synchronize

    monkeypatch.setenv("WMSYNC_USER", "tester")
    cluster = make_cluster(emulator, "Parent", "AZ_Repository", "Texas")
    parent, az, texas = cluster.parent, *cluster.children
    assert (
        synchronize(parent.url, "Parent", f"AZ_Repository true {az.url} ''", user="tester").status
        == 0
    )
    hq = "http://hq/arcgis/rest/services/Parent/WMServer"
    exec(
        compile(
            _sample(
                "CreateJobDataReplica",
                {hq: parent.url, "http://tx/arcgis/rest/services/TX/WMServer": texas.url},
            ),
            "replicate",
            "exec",
        ),
        {},
    )
    assert capsys.readouterr().out.split() == ["0", "0"]
    exec(compile(_sample("ClusterStatus", {hq: parent.url}), "status", "exec"), {})
    out = capsys.readouterr().out
    assert "Texas child" in out and "AZ_Repository child" in out
    exec(compile(_sample("ClearJobReplicationInfo", {hq: parent.url}), "clear", "exec"), {})
    assert capsys.readouterr().out.strip() == "0"
    assert [n["name"] for n in cluster.client("Parent").replication_info()["nodes"]] == ["Parent"]
    cluster.close()


def test_install_places_the_toolset_metadata_too(tmp_path):
    from wmsync.install import install_toolbox

    folder = os.path.dirname(install_toolbox(os.fspath(tmp_path / "WorkflowSync")))
    assert {tool_xml(name).name for name in TOOLSET} <= set(os.listdir(folder))
