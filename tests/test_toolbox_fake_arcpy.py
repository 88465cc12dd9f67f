"""The fake arcpy itself: it must behave like Pro where the toolbox relies on it."""

from __future__ import annotations

import textwrap

import pytest
from fake_arcpy.fixtures import arcpy_fixture  # noqa: F401

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

# --------------------------------------------------------------------------- ValueTable


def test_value_table_text_round_trip(arcpy):
    vt = arcpy.ValueTable(4)
    vt.addRow(["Ohio", "true", "http://o/WMServer", "08/01/2013 11:30:45"])
    vt.addRow("AZ true http://a/WMServer #")
    assert vt.rowCount == 2 and vt.columnCount == 4
    text = vt.exportToString()
    assert text == "Ohio true http://o/WMServer '08/01/2013 11:30:45';AZ true http://a/WMServer #"
    again = arcpy.ValueTable(4)
    again.loadFromString(text)
    assert again.exportToString() == text
    assert again.getTrueRow(1) == ["AZ", "true", "http://a/WMServer", ""]


def test_value_table_row_and_value_are_strings(arcpy):
    vt = arcpy.ValueTable(["GPString", "GPLong"])
    vt.addRow(["land use", 2])
    assert vt.getRow(0) == "'land use' 2"
    assert vt.getValue(0, 1) == "2"
    assert vt.getTrueValue(0, 1) == 2
    vt.setValue(0, 1, "7")
    assert vt.getTrueRow(0) == ["land use", 7]


def test_unquoted_time_joins_the_last_column(arcpy):
    vt = arcpy.ValueTable(4)
    vt.loadFromString("Ohio true http://o/WMServer 2011-08-08 12:00;AZ true http://a/WMServer")
    assert vt.getTrueRow(0)[3] == "2011-08-08 12:00"
    assert vt.getTrueRow(1) == ["AZ", "true", "http://a/WMServer", ""]
    assert str(vt) == vt.exportToString()


def test_value_table_columns_forms(arcpy):
    assert arcpy.ValueTable().columnCount == 1
    assert arcpy.ValueTable("GPLong").columnCount == 1
    vt = arcpy.ValueTable(2)
    vt.addColumns(1)
    assert vt.columnCount == 3
    with pytest.raises(ValueError):
        vt.addRow(["a", "b", "c", "d"])


# --------------------------------------------------------------------------- Parameter


def table_param(arcpy):
    p = arcpy.Parameter(name="T", displayName="T", datatype="GPValueTable")
    p.columns = [["GPString", "a"], ["GPString", "b"]]
    return p


def test_parameter_defaults_are_pro_34(arcpy):
    p = arcpy.Parameter(name="x", displayName="X")
    assert (p.direction, p.datatype, p.parameterType, p.enabled, p.multiValue) == (
        "Input",
        "GPString",
        "Required",
        True,
        False,
    )
    assert p.value is None and p.valueAsText is None and not p.altered
    assert not p.hasBeenValidated


def test_value_table_parameter_value_values_and_text(arcpy):
    p = table_param(arcpy)
    assert len(p.filters) == 2
    p.value = "x 'y z';u #"
    assert isinstance(p.value, arcpy.ValueTable)
    assert p.values == [["x", "y z"], ["u", ""]]
    assert p.valueAsText == "x 'y z';u #"
    p.value.addRow("changed copy")  # .value is a copy, as arcpy hands out a new object
    assert p.values == [["x", "y z"], ["u", ""]]
    p.values = [["k", "v"]]
    assert p.valueAsText == "k v"


def test_read_only_properties(arcpy):
    p = arcpy.Parameter(name="x", displayName="X")
    for name in ("altered", "hasBeenValidated", "message", "valueAsText"):
        with pytest.raises(AttributeError):
            setattr(p, name, 1)


def test_messages_on_parameters(arcpy):
    p = arcpy.Parameter(name="x", displayName="X")
    p.setWarningMessage("careful")
    assert p.hasWarning() and not p.hasError() and p.message == "careful"
    p.setErrorMessage("bad")
    assert p.hasError() and not p.hasWarning()
    p.clearMessage()
    assert not p.hasError() and p.message == ""
    p.setIDMessage("ERROR", 735)
    assert p.message == "ERROR 000735: X: Value is required"


def test_long_parameter_and_filter(arcpy):
    p = arcpy.Parameter(
        name="n", displayName="N", datatype="GPLong", parameterType="Derived", direction="Output"
    )
    p.value = 3
    assert p.valueAsText == "3"
    s = arcpy.Parameter(name="s", displayName="S")
    s.filter.list = ["a", "b"]
    assert s.filter.type == "ValueList"


# --------------------------------------------------------------------------- tool runs

TOY = """
import arcpy

class Toolbox:
    def __init__(self):
        self.label = "Toy"
        self.alias = "toy"
        self.tools = [Echo]

class Echo:
    def getParameterInfo(self):
        a = arcpy.Parameter(name="a", displayName="A", datatype="GPString")
        a.filter.list = ["ok", "error", "raise", "crash", "warn", "freeze", "cancel",
                         "thread", "ignore", "honour"]
        n = arcpy.Parameter(name="n", displayName="N", datatype="GPLong",
                            parameterType="Derived", direction="Output")
        t = arcpy.Parameter(name="t", displayName="T", datatype="GPString",
                            parameterType="Derived", direction="Output")
        return [a, n, t]

    def updateMessages(self, parameters):
        if parameters[0].valueAsText == "freeze":
            parameters[0].parameterType = "Optional"

    def execute(self, parameters, messages):
        what = parameters[0].valueAsText
        messages.addMessage("hello")
        if what == "warn":
            arcpy.AddWarning("careful")
        if what == "error":
            messages.addErrorMessage("an error message")
        if what == "raise":
            messages.addErrorMessage("giving up")
            raise arcpy.ExecuteError("giving up")
        if what == "crash":
            raise KeyError("boom")
        if what == "cancel":
            arcpy._fake.request_cancel()
            arcpy.SetProgressorLabel("next line")
        if what in ("ignore", "honour"):
            arcpy.env.autoCancelling = False
            arcpy._fake.request_cancel()
            arcpy.SetProgressorLabel("goes on")
            if what == "honour" and arcpy.env.isCancelled:
                messages.addErrorMessage("stopped")
                raise arcpy.ExecuteError("stopped")
        if what == "thread":
            import threading
            refused = []
            def worker():
                for call in (lambda: arcpy.AddMessage("from a worker"),
                             lambda: messages.addWarningMessage("from a worker")):
                    try:
                        call()
                    except RuntimeError as exc:
                        refused.append(str(exc))
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
            messages.addMessage(" | ".join(refused))
        parameters[1].value = 7
        arcpy.SetParameter(2, "text out")
"""


@pytest.fixture
def toy(arcpy, tmp_path):
    path = tmp_path / "Toy.pyt"
    path.write_text(textwrap.dedent(TOY))
    return arcpy.ImportToolbox(str(path))


def test_result_outputs_are_strings_and_count_outputs_only(arcpy, toy):
    result = arcpy.Echo_toy("ok")
    assert toy.Echo is arcpy.Echo_toy
    assert result.getOutput(0) == "7" and result[1] == "text out"
    assert result.getOutput("t") == "text out"
    assert result.outputCount == 2 and result.status == 4
    assert result.getInput(0) == "ok"
    assert "hello" in result.getMessages(0)
    assert arcpy.GetMessages().splitlines()[0].startswith("Start Time:")
    assert arcpy.GetMessages().splitlines()[-1].startswith("Succeeded at")


def test_warning_keeps_the_tool_succeeding(arcpy, toy):
    result = arcpy.toy.Echo("warn")
    assert result.maxSeverity == 1
    assert arcpy.GetMessages(1) == "careful"


@pytest.mark.parametrize("what", ["error", "raise", "crash"])
def test_error_messages_and_exceptions_fail_the_tool(arcpy, toy, what):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.Echo_toy(what)
    assert str(info.value).endswith("Failed to execute (Echo).")
    if what == "crash":
        assert "KeyError: 'boom'" in arcpy.GetMessages(2)


def test_invalid_parameters_refuse_before_execute(arcpy, toy):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.Echo_toy("nope")
    assert str(info.value).startswith("Failed to execute. Parameters are not valid.")
    assert "ERROR 000800" in str(info.value)
    assert "hello" not in arcpy.GetMessages()


def test_value_list_is_case_insensitive(arcpy, toy):
    assert arcpy.Echo_toy("OK").getOutput(0) == "7"


def test_validation_may_not_change_immutable_properties(arcpy, toy):
    with pytest.raises(AttributeError, match="parameterType"):
        arcpy.Echo_toy("freeze")


def test_arcpy_calls_from_a_worker_thread_are_refused_while_a_tool_runs(arcpy, toy):
    result = arcpy.Echo_toy("thread")
    refused = result.getMessages(0)
    assert "AddMessage called from a worker thread" in refused
    assert "messages.addWarningMessage called from a worker thread" in refused
    assert "from a worker" not in refused.replace("from a worker thread", "")
    assert arcpy._fake.off_thread_calls == ["AddMessage", "messages.addWarningMessage"]
    arcpy._fake.off_thread_calls.clear()  # seen: the fixture's check would fail on them


def test_auto_cancelling_interrupts_the_next_arcpy_call(arcpy, toy):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.Echo_toy("cancel")
    assert "Cancelled script Echo... (Echo) aborted by User." in str(info.value)
    assert "next line" not in str(arcpy._fake.progress)
    assert not arcpy.env.isCancelled  # the Cancel belonged to that run
    assert arcpy._fake.runs[-1].status == "cancelled"


def test_a_tool_that_stops_itself_after_cancel_ends_cancelled(arcpy, toy):
    with pytest.raises(arcpy.ExecuteError) as info:
        arcpy.Echo_toy("honour")
    assert "stopped" in str(info.value) and "aborted by User" in str(info.value)
    assert arcpy._fake.runs[-1].status == "cancelled"
    assert ("SetProgressorLabel", "goes on") in arcpy._fake.progress


def test_a_tool_that_ignores_cancel_is_recorded_as_such(arcpy, toy):
    assert arcpy.Echo_toy("ignore").getOutput(0) == "7"
    run = arcpy._fake.runs[-1]
    assert run.status == "succeeded" and run.cancel_ignored
    assert arcpy.Echo_toy("ok") and not arcpy._fake.runs[-1].cancel_ignored


def test_arguments_bind_by_name_and_refuse_outputs(arcpy, toy):
    assert arcpy.Echo_toy(a="ok").getOutput(0) == "7"
    with pytest.raises(TypeError):
        arcpy.Echo_toy("ok", "extra")
    with pytest.raises(TypeError):
        arcpy.Echo_toy(n=3)


def test_alias_and_tool_names_are_checked(arcpy, tmp_path):
    path = tmp_path / "Bad.pyt"
    path.write_text(textwrap.dedent(TOY).replace('"toy"', '"to_y"'))
    with pytest.raises(ValueError, match="alias"):
        arcpy.ImportToolbox(str(path))
    assert arcpy.ImportToolbox(str(path), "fine").Echo


def test_signin_token_and_env(arcpy):
    assert arcpy.GetSigninToken() is None
    arcpy._fake.set_signin_token("abc")
    assert arcpy.GetSigninToken()["token"] == "abc"
    assert arcpy.env.autoCancelling is True and arcpy.env.isCancelled is False
    with pytest.raises(AttributeError):
        arcpy.env.isCancelled = True
