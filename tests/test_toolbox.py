"""WorkflowSync.pyt through the fake arcpy: definitions, dialog validation, execute mapping.

The engine is replaced here by a scripted stand-in (``wmsync.engine.synchronize``) so that
each branch of ``execute`` is exercised without servers; test_toolbox_emulators.py runs
the real engine against emulators on loopback.
"""

from __future__ import annotations

import os
import sys
import time
import types
from datetime import datetime
from pathlib import Path

import pytest
from fake_arcpy.fixtures import PYT, arcpy_fixture, toolbox_fixture  # noqa: F401

import wmsync.engine
from wmsync.report import FAILED, SYNCHRONIZED, ChildResult, SyncResult
from wmsync.toolbox import fresh_import
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

PARENT = "http://hq/arcgis/rest/services/Parent/WMServer"
OHIO = "http://ohioServer/arcgis/rest/services/SO/WMServer"
AZ = "http://AZServer/arcgis/rest/services/AZ/WMServer"
ESRI_SAMPLE = (
    f"Ohio_Repository true {OHIO} 2011-08-08 12:00;AZ_Repository true {AZ} 2011-08-08 12:00"
)
NAMES = [
    "Input_Parent_Repository_URL",
    "Input_Parent_Repository_Name",
    "Input_Multi_Name",
    "Output_SynchronizeReplicaStatus",
    "Output_LastSync",
]
COLUMNS = [
    ["GPString", "child_repository"],
    ["GPString", "connected"],
    ["GPString", "URL"],
    ["GPString", "last_sync_time"],
]


@pytest.fixture
def dialog(arcpy, toolbox):
    d = arcpy.ToolDialog(toolbox.SynchronizeJobData())
    d.set("Input_Parent_Repository_URL", PARENT)
    d.set("Input_Parent_Repository_Name", "Parent")
    return d


# --------------------------------------------------------------------------- definitions


def test_toolbox_registry(toolbox):
    box = toolbox.Toolbox()
    assert box.label == "Workflow Sync"
    assert box.alias == "wmx"
    assert box.tools[0] is toolbox.SynchronizeJobData
    assert {toolbox.ExportJobData, toolbox.ImportJobData} <= set(box.tools)
    assert toolbox.SynchronizeJobData().label == "Synchronize Job Data"


def test_parameters_match_esri_contract(toolbox):
    params = toolbox.SynchronizeJobData().getParameterInfo()
    assert [p.name for p in params] == NAMES
    assert [(p.datatype, p.parameterType, p.direction) for p in params] == [
        ("GPString", "Required", "Input"),
        ("GPString", "Required", "Input"),
        ("GPValueTable", "Required", "Input"),
        ("GPLong", "Derived", "Output"),
        ("GPValueTable", "Derived", "Output"),
    ]
    assert [p.displayName for p in params] == [
        "Input Parent Repository URL",
        "Input Parent Repository Name",
        "Input Multi Name",
        "Status of Replica Synchronization",
        "Last Synchronized",
    ]
    assert params[2].columns == COLUMNS
    assert params[4].columns == COLUMNS  # Last Synchronized chains into Input_Multi_Name
    assert [f.type for f in params[2].filters] == [None, "ValueList", None, None]
    assert params[2].filters[1].list == ["true", "false"]
    assert all(p.value is None for p in params)


def test_toolbox_file_is_ascii_and_loads_from_its_own_folder(arcpy, monkeypatch):
    assert PYT.read_bytes().decode("ascii")
    folder = str(PYT.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or ".") != folder])
    monkeypatch.chdir("/")
    module = arcpy._load_pyt(str(PYT))
    assert sys.path[0] == folder
    assert module.Toolbox().alias == "wmx"


# --------------------------------------------------------------------------- validation


def test_esri_sample_validates_clean(dialog):
    p = dialog.set("Input_Multi_Name", ESRI_SAMPLE)
    assert dialog.errors() == {}
    assert dialog.warnings() == {}
    assert p.values[0] == ["Ohio_Repository", "true", OHIO, "2011-08-08 12:00"]
    assert [s.name for s in parse_children(p.valueAsText)] == ["Ohio_Repository", "AZ_Repository"]


def test_esri_sample_with_quoted_locale_time_validates_clean(dialog):
    dialog.set("Input_Multi_Name", f"Ohio true {OHIO} '08/01/2013 11:30:45'")
    assert dialog.errors() == {}


def test_never_synchronized_child_with_empty_time_is_fine(dialog):
    p = dialog.set("Input_Multi_Name", [["Ohio", "true", OHIO, ""]])
    assert dialog.errors() == {}
    assert p.valueAsText == f"Ohio true {OHIO} #"


@pytest.mark.parametrize(
    ("rows", "row", "words"),
    [
        ([["Ohio", "true", OHIO, ""], ["AZ", "false", AZ, ""]], 2, ["connected", "'false'"]),
        ([["Ohio", "true", OHIO, "yesterday noon"]], 1, ["last_sync_time", "yesterday noon"]),
        ([["Ohio", "true", OHIO, "13/45/2011 10:00"]], 1, ["13/45/2011 10:00"]),
        ([["Ohio", "true", OHIO, ""], ["", "true", AZ, ""]], 2, ["name is empty"]),
        ([["Ohio", "true", OHIO, ""], ["ohio", "true", AZ, ""]], 2, ["listed twice", "row 1"]),
        ([["Ohio", "true", "ftp://ohio/WMServer", ""]], 1, ["ftp://ohio/WMServer", "http"]),
        ([["Ohio", "true", PARENT, ""]], 1, ["parent"]),
        ([["Ohio", "true", PARENT.upper().replace("HTTP:", "http:") + "/", ""]], 1, ["parent"]),
    ],
    ids=[
        "connected-false",
        "unreadable-date",
        "bad-day",
        "empty-name",
        "duplicate-name",
        "non-http-url",
        "url-is-parent",
        "url-is-parent-other-case",
    ],
)
def test_bad_row_is_an_error_naming_the_row(dialog, rows, row, words):
    p = dialog.set("Input_Multi_Name", rows)
    assert p.hasError()
    assert f"Row {row}" in p.message
    for word in words:
        assert word in p.message
    assert set(dialog.errors()) == {"Input_Multi_Name"}


def test_connected_other_than_true_is_an_error_even_past_the_value_list(dialog):
    # "yes" also fails Pro's value-list filter (ERROR 000800); the row message replaces it.
    p = dialog.set("Input_Multi_Name", [["Ohio", "yes", OHIO, ""]])
    assert p.hasError()
    assert "Row 1" in p.message and "'yes'" in p.message


def test_true_in_any_case_passes_even_a_case_sensitive_value_list(arcpy, dialog, monkeypatch):
    def case_sensitive(self, value):
        return self.type != "ValueList" or not value or value in self.list

    monkeypatch.setattr(arcpy.Filter, "_accepts", case_sensitive)
    p = dialog.set("Input_Multi_Name", [["Ohio", "TRUE", OHIO, ""], ["AZ", "True", AZ, ""]])
    assert not p.hasError(), p.message


def test_every_bad_row_is_listed(dialog):
    p = dialog.set("Input_Multi_Name", [["A", "false", OHIO, ""], ["B", "true", "nope", ""]])
    assert "Row 1" in p.message and "Row 2" in p.message


def test_parent_url_that_is_not_wmserver_is_a_warning(dialog):
    p = dialog.set("Input_Parent_Repository_URL", "http://hq/arcgis/rest/services/Parent")
    assert p.hasWarning() and not p.hasError()
    assert "WMServer" in p.message
    assert dialog.errors() == {}


def test_child_url_that_is_not_wmserver_is_the_same_warning(dialog):
    p = dialog.set("Input_Multi_Name", [["Ohio", "true", OHIO.rsplit("/", 1)[0], ""]])
    assert p.hasWarning() and not p.hasError()
    assert p.message.startswith("Row 1: child URL ") and "does not end with /WMServer" in p.message
    assert dialog.errors() == {}


def test_good_parent_url_has_no_message(dialog):
    assert not dialog["Input_Parent_Repository_URL"].message


def test_value_from_a_model_is_not_checked_in_the_dialog(dialog):
    p = dialog.set("Input_Multi_Name", [["A", "false", OHIO, ""]], derived=True)
    assert not p.hasError()


def test_validation_does_no_network(dialog, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("validation opened a socket")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    started = time.perf_counter()
    for _ in range(50):
        dialog.set("Input_Multi_Name", ESRI_SAMPLE)
    assert time.perf_counter() - started < 2.0


def test_validation_does_not_touch_immutable_properties(dialog):
    # The fake raises on writes Pro forbids during validation; a clean pass proves none.
    dialog.set("Input_Multi_Name", [["A", "false", "x", "y"], ["A", "true", OHIO, ""]])
    assert dialog["Input_Multi_Name"].hasBeenValidated


# ------------------------------------------------------------- execute (stand-in engine)


class Script:
    """A stand-in for wmsync.engine.synchronize: plays listener calls, returns a result."""

    def __init__(self, status=0, error=None, failed=(), say=(), cancelled=False):
        self.status, self.error, self.failed, self.say = status, error, set(failed), say
        self.cancelled = cancelled
        self.calls = []

    def __call__(self, parent_url, parent_name, children, **kwargs):
        self.calls.append((parent_url, parent_name, children, kwargs))
        listener = kwargs["listener"]
        specs = parse_children(children)
        for kind, text in self.say:
            getattr(listener, kind)(text)
        listener.begin(2 * len(specs), "Synchronizing job data")
        results = []
        # The engine's step labels, phase after phase (all pulls, then all pushes).
        for phase in ("sending changes to the parent", "receiving changes from the parent"):
            for spec in specs:
                listener.step(f"{spec.name}: {phase}")
                listener.step_done()
        for spec in specs:
            if spec.name in self.failed:
                listener.warning(f"{spec.name} failed while sending changes: boom")
                results.append(ChildResult(spec, state=FAILED, error="boom"))
            else:
                listener.info(f"{spec.name}: sent 1, received 2, conflicts 0")
                results.append(ChildResult(spec, state=SYNCHRONIZED, last_sync=NEW_TIME))
        now = datetime.now().astimezone()
        return SyncResult(
            self.status,
            parent_name,
            parent_url,
            now,
            now,
            results,
            error=self.error,
            cancelled=self.cancelled,
        )


NEW_TIME = datetime(2024, 3, 1, 9, 30, 5).astimezone()


@pytest.fixture
def engine(monkeypatch):
    def install(script):
        monkeypatch.setattr(wmsync.engine, "synchronize", script)
        return script

    return install


def run_tool(arcpy, *args):
    module = arcpy.ImportToolbox(str(PYT), "wmx")
    assert module is arcpy.wmx
    return arcpy.SynchronizeJobData_wmx(*args)


def test_execute_sets_both_outputs_and_maps_progress(arcpy, engine):
    script = engine(Script())
    result = run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert result.getOutput(0) == "0"
    out = result.getOutput(1)
    assert out == (
        f"Ohio_Repository true {OHIO} '2024-03-01 09:30:05';"
        f"AZ_Repository true {AZ} '2024-03-01 09:30:05'"
    )
    ((url, name, children, _kwargs),) = script.calls
    assert (url, name) == (PARENT, "Parent")
    assert children[0] == ["Ohio_Repository", "true", OHIO, "2011-08-08 12:00"]
    calls = arcpy._fake.progress
    assert calls[0] == ("SetProgressor", "step", "Synchronizing job data", 0, 4, 1)
    labels = [c[1] for c in calls if c[0] == "SetProgressorLabel"]
    assert labels == [
        "Pulling: 0 of 2 children",
        "Pulling: 1 of 2 children",
        "Pulling: 1 of 2 children",
        "Pulling: 2 of 2 children",
        "Pushing: 0 of 2 children",
        "Pushing: 1 of 2 children",
        "Pushing: 1 of 2 children",
        "Pushing: 2 of 2 children",
    ]
    assert sum(1 for c in calls if c[0] == "SetProgressorPosition") == 4
    assert calls[-1] == ("ResetProgressor",)
    assert (0, "Ohio_Repository: sent 1, received 2, conflicts 0") in arcpy._fake.messages()
    assert result.maxSeverity == 0


def test_user_and_token_come_from_the_environment(arcpy, engine, monkeypatch):
    script = engine(Script())
    monkeypatch.setenv("WMSYNC_USER", "DOMAIN\\jdoe")
    monkeypatch.setenv("WMSYNC_TOKEN", "env-token")
    run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    kwargs = script.calls[0][3]
    assert kwargs["user"] == "DOMAIN\\jdoe"
    assert kwargs["token"] == "env-token"


def test_signin_token_wins_and_user_defaults_to_os_user(arcpy, engine, monkeypatch):
    import getpass

    script = engine(Script())
    monkeypatch.setenv("WMSYNC_TOKEN", "env-token")
    arcpy._fake.set_signin_token("portal-token")
    run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    kwargs = script.calls[0][3]
    assert kwargs["token"].get() == "portal-token"  # a source: renewed on a 498
    assert "portal-token" not in repr(kwargs["token"])
    assert kwargs["user"] == getpass.getuser()


def test_failed_child_is_a_warning_and_outputs_still_come(arcpy, engine):
    engine(Script(status=1, failed={"AZ_Repository"}))
    result = run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert result.getOutput(0) == "1"
    rows = result.getOutput(1).split(";")
    assert rows[1] == f"AZ_Repository true {AZ} '2011-08-08 12:00'"  # old time kept
    warnings = [t for s, t in arcpy._fake.messages() if s == 1]
    assert warnings[0] == "AZ_Repository failed while sending changes: boom"  # once, not twice
    assert warnings[1:] == [  # and a closing summary
        "1 of 2 connected children synchronized; not synchronized: AZ_Repository. Their "
        "Last Synchronized time is unchanged, so the next run retries them (status 1)."
    ]
    assert result.maxSeverity == 1


def test_no_summary_when_every_child_synchronized(arcpy, engine):
    engine(Script())
    run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert not [t for s, t in arcpy._fake.messages() if s == 1]
    assert arcpy._fake.runs[-1].status == "succeeded"


def test_status_minus_one_is_an_error_and_execute_error(arcpy, engine):
    engine(Script(status=-1, error="parent Parent: the server's repository is named 'HQ'"))
    with pytest.raises(arcpy.ExecuteError) as info:
        run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert "named 'HQ'" in str(info.value)
    assert "Failed to execute (SynchronizeJobData)." in str(info.value)
    assert "named 'HQ'" in arcpy.GetMessages(2)
    assert arcpy._fake.progress[-1] == ("ResetProgressor",)


def test_planted_token_never_reaches_a_message(arcpy, engine):
    secret = "s3cr3t-portal-token-0123456789"
    arcpy._fake.set_signin_token(secret)
    engine(
        Script(
            status=-1,
            error=f"refused with token={secret}",
            say=[("info", f"using {secret}"), ("warning", f"warn {secret}")],
        )
    )
    with pytest.raises(arcpy.ExecuteError) as info:
        run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert secret not in str(info.value)
    assert secret not in arcpy._fake.all_text()
    assert "***" in arcpy._fake.all_text()


def test_invalid_table_refuses_before_execute(arcpy, engine):
    script = engine(Script())
    with pytest.raises(arcpy.ExecuteError) as info:
        run_tool(arcpy, PARENT, "Parent", f"Ohio false {OHIO} 2011-08-08 12:00")
    assert str(info.value).startswith("Failed to execute. Parameters are not valid.")
    assert "Row 1" in str(info.value)
    assert script.calls == []


def test_missing_required_value_refuses(arcpy, engine):
    engine(Script())
    with pytest.raises(arcpy.ExecuteError, match="000735"):
        run_tool(arcpy, PARENT, "Parent")


def test_cancel_is_left_to_the_engine_and_auto_cancelling_restored(arcpy, engine):
    seen = []

    class Cancelling(Script):
        def __call__(self, *args, **kwargs):
            arcpy._fake.request_cancel()
            seen.append(kwargs["listener"].cancelled())
            return super().__call__(*args, **kwargs)  # arcpy calls must not raise now

    engine(Cancelling(cancelled=True))
    with pytest.raises(arcpy.ExecuteError) as info:
        run_tool(arcpy, PARENT, "Parent", ESRI_SAMPLE)
    assert seen == [True]
    assert arcpy.env.autoCancelling is True
    # Cancelled in ArcGIS's sense: the tool fails, it does not "succeed" with a status.
    run = arcpy._fake.runs[-1]
    assert run.status == "cancelled" and not run.cancel_ignored
    assert "Cancelled: 2 of 2 connected children synchronized" in str(info.value)
    assert "aborted by User" in str(info.value)
    assert any(
        t.startswith("Last Synchronized so far: Ohio_Repository true")
        for _, t in arcpy._fake.messages(0)
    )


def test_python_true_and_list_rows_from_a_script(arcpy, engine):
    script = engine(Script())
    run_tool(arcpy, PARENT, "Parent", [["Ohio", True, OHIO, ""], ["AZ", "TRUE", AZ, None]])
    assert [s.connected for s in parse_children(script.calls[0][2])] == [True, True]


def test_both_call_forms(arcpy, engine):
    engine(Script())
    module = arcpy.ImportToolbox(str(PYT), "wmx")
    by_keyword = module.SynchronizeJobData(
        Input_Parent_Repository_URL=PARENT,
        Input_Parent_Repository_Name="Parent",
        Input_Multi_Name=ESRI_SAMPLE,
    )
    assert by_keyword.getOutput(0) == "0"
    assert by_keyword.getOutput("Output_LastSync") == by_keyword[1]


# --------------------------------------------------------------------------- reload


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A throwaway package standing in for wmsync, to exercise the reload rule."""
    pkg = tmp_path / "wmsyncprobe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("WMSYNC_RELOAD", raising=False)  # the automatic rule
    yield pkg
    for name in [n for n in sys.modules if n.startswith("wmsyncprobe")]:
        del sys.modules[name]


def _edit(path: Path, text: str) -> None:
    path.write_text(text)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_unchanged_package_is_not_reimported(probe):
    first = fresh_import("wmsyncprobe")
    core = fresh_import("wmsyncprobe.core")
    assert fresh_import("wmsyncprobe") is first
    assert sys.modules["wmsyncprobe.core"] is core


def test_edited_package_is_reimported_whole(probe):
    fresh_import("wmsyncprobe")
    old = fresh_import("wmsyncprobe.core")
    _edit(probe / "core.py", "VALUE = 2\n")
    new = fresh_import("wmsyncprobe.core")
    assert new is not old and new.VALUE == 2


def test_reload_can_be_forced(probe, monkeypatch):
    first = fresh_import("wmsyncprobe")
    monkeypatch.setenv("WMSYNC_RELOAD", "1")
    assert fresh_import("wmsyncprobe") is not first


def test_reload_can_be_switched_off(probe, monkeypatch):
    first = fresh_import("wmsyncprobe")
    _edit(probe / "core.py", "VALUE = 3\n")
    monkeypatch.setenv("WMSYNC_RELOAD", "0")
    assert fresh_import("wmsyncprobe") is first


def test_loading_the_toolbox_twice_keeps_wmsync(arcpy, toolbox):
    import wmsync.toolbox

    again = arcpy._load_pyt(str(PYT))
    assert again.core is wmsync.toolbox is toolbox.core


REFRESH_DRIVER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from fake_arcpy import new_arcpy, load_toolbox
sys.modules["arcpy"] = arcpy = new_arcpy()
pyt = sys.argv[2]
first = load_toolbox(arcpy, pyt)
print(first.core.closing_summary.__doc__.split()[0])
path = os.path.join(os.path.dirname(pyt), "wmsync", "toolbox.py")
with open(path) as handle:
    text = handle.read()
with open(path, "w") as handle:
    handle.write(text.replace('One line when', 'Edited: one line when'))
later = time.time() + 5
os.utime(path, (later, later))
again = load_toolbox(arcpy, pyt)  # what Refresh does in Pro
print(again.core.closing_summary.__doc__.split()[0], again.core is first.core)
"""


def test_refreshing_the_installed_toolbox_picks_up_an_edited_wmsync(tmp_path):
    """A drop-in folder (wmsync install-toolbox): Refresh re-imports a changed package."""
    import subprocess

    from wmsync.install import install_toolbox

    pyt = install_toolbox(os.fspath(tmp_path / "WorkflowSync"))
    driver = tmp_path / "driver.py"
    driver.write_text(REFRESH_DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "WMSYNC_RELOAD"}
    out = subprocess.run(
        [sys.executable, str(driver), str(Path(__file__).parent), pyt],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert out.stdout.split() == ["One", "Edited:", "False"], out.stderr


def test_toolbox_imports_without_werkzeug(tmp_path):
    """The .pyt and what it imports need only the standard library, wmsync and arcpy."""
    import subprocess

    fake = Path(__file__).parent / "fake_arcpy"
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'werkzeug': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(fake.parent)!r})\n"
        "from fake_arcpy import new_arcpy, load_toolbox\n"
        "sys.modules['arcpy'] = new_arcpy()\n"
        f"tb = load_toolbox(sys.modules['arcpy'], {str(PYT)!r})\n"
        "tb.SynchronizeJobData().getParameterInfo()\n"
        "import wmsync.engine\n"
        "print('ok', 'werkzeug' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert out.stdout.strip() == "ok False", out.stderr


def test_the_pyt_is_a_registry_and_a_parameter_mapping():
    """Logic lives in wmsync.toolbox, where plain tests reach it: the .pyt stays thin."""
    import ast

    source = PYT.read_text(encoding="ascii")
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported == {"os", "sys", "arcpy", "wmsync.toolbox"}
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.ImportFrom, ast.Try))]
    tools = len([n for n in tree.body if isinstance(n, ast.ClassDef)]) - 1  # not Toolbox
    assert len(source.splitlines()) <= 40 + 55 * tools  # declarations and a call per tool


def test_module_is_a_plain_namespace(toolbox):
    assert isinstance(toolbox, types.ModuleType)
    assert not hasattr(toolbox, "werkzeug")
