"""wmsync.toolbox without arcpy: the listener, the closing summary, the dialog's URL warnings.

A tiny recorder stands in for the arcpy module; WorkflowSync.pyt itself is exercised
through the fake arcpy in test_toolbox.py.
"""

from __future__ import annotations

import types

import pytest

from wmsync.auth import ThreadBoundToken
from wmsync.report import FAILED, SKIPPED, SYNCHRONIZED, ChildResult, SyncResult
from wmsync.toolbox import ArcpyListener, closing_summary, update_messages
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

OHIO = "http://ohio/arcgis/rest/services/SO/WMServer"


class Recorder:
    """The few arcpy functions the listener calls, recorded."""

    def __init__(self):
        self.calls = []
        self.env = types.SimpleNamespace(isCancelled=False)

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


class Messages:
    def __init__(self):
        self.seen = []

    def addMessage(self, text):
        self.seen.append((0, text))

    def addWarningMessage(self, text):
        self.seen.append((1, text))


def labels(arcpy):
    return [c[1] for c in arcpy.calls if c[0] == "SetProgressorLabel"]


def test_label_names_the_phase_and_the_count_from_the_engine_labels():
    arcpy = Recorder()
    listener = ArcpyListener(arcpy, Messages())
    listener.begin(6, "Synchronizing job data")
    for name in ("A", "B", "C"):  # parallel workers: steps start before others end
        listener.step(f"{name}: sending changes to the parent")
    listener.step_done()
    listener.step_done()
    assert labels(arcpy)[-1] == "Pulling: 2 of 3 children"
    listener.step_done()
    listener.step("C: receiving changes from the parent")
    assert labels(arcpy)[-1] == "Pushing: 0 of 3 children"
    assert arcpy.calls[0] == ("SetProgressor", "step", "Synchronizing job data", 0, 6, 1)


def test_an_explicit_phase_wins_over_the_label():
    arcpy = Recorder()
    listener = ArcpyListener(arcpy, Messages())
    listener.begin(4, "x")
    listener.step("A: something new", phase="Checking")
    listener.step_done()
    assert labels(arcpy) == ["Checking: 0 of 2 children", "Checking: 1 of 2 children"]


def test_children_that_failed_their_check_leave_the_count():
    arcpy = Recorder()
    listener = ArcpyListener(arcpy, Messages())
    listener.begin(6, "x")
    listener.step_done()  # B failed its check: both its steps end at once
    listener.step_done()
    listener.step("A: sending changes to the parent")
    assert labels(arcpy) == ["Pulling: 0 of 2 children"]
    assert sum(1 for c in arcpy.calls if c[0] == "SetProgressorPosition") == 2


def test_tokens_are_scrubbed_and_renewals_served_on_cancel_polls():
    arcpy = Recorder()
    tokens = iter(["first-token", "second-token"])
    source = ThreadBoundToken(lambda: next(tokens))
    messages = Messages()
    listener = ArcpyListener(arcpy, messages, source)
    source.refresh()
    listener.info("sent first-token and second-token")
    listener.warning("first-token")
    assert messages.seen == [(0, "sent *** and ***"), (1, "***")]
    assert listener.cancelled() is False
    arcpy.env.isCancelled = True
    assert listener.cancelled() is True
    assert ArcpyListener(arcpy, messages, "plain").scrub("a plain b") == "a *** b"


def _result(states, cancelled=False):
    text = ";".join(f"C{i} true {OHIO}{i} ''" for i in range(len(states)))
    children = [ChildResult(spec, state=state) for spec, state in zip(parse_children(text), states)]
    failed = states.count(FAILED)
    return SyncResult(failed, "P", "http://p/WMServer", None, None, children, cancelled=cancelled)


def test_closing_summary():
    assert closing_summary(_result([SYNCHRONIZED, SKIPPED])) is None
    text = closing_summary(_result([SYNCHRONIZED, FAILED, SKIPPED, FAILED]))
    assert text.startswith("1 of 3 connected children synchronized; not synchronized: C1, C3.")
    assert text.endswith("(status 2).")
    assert closing_summary(_result([SYNCHRONIZED], cancelled=True)).startswith("1 of 1 ")


class Param:
    """A dialog parameter: value and the message calls update_messages makes."""

    def __init__(self, value, rows=None):
        self.value = value
        self.valueAsText = value
        self.values = rows
        self.message = None
        self.level = None

    def isInputValueDerived(self):
        return False

    def hasError(self):
        return self.level == "error"

    def setWarningMessage(self, text):
        self.level, self.message = "warning", text

    def setErrorMessage(self, text):
        self.level, self.message = "error", text

    def clearMessage(self):
        self.level = self.message = None


@pytest.mark.parametrize(
    "url, warned",
    [
        ("http://ohio/arcgis/rest/services/SO/WMServer", False),
        ("http://ohio/arcgis/rest/services/SO/wmserver/", False),
        ("http://ohio/arcgis/rest/services/SO", True),
        ("http://ohio/arcgis/rest/services/SO/MapServer", True),
    ],
)
def test_a_child_url_not_ending_in_wmserver_gets_the_parents_warning(url, warned):
    parent = Param("http://hq/arcgis/rest/services/P/WMServer")
    table = Param("x", rows=[["Ohio", "true", url, ""]])
    update_messages(parent, table)
    assert parent.message is None
    if warned:
        assert table.level == "warning"
        assert table.message == (
            f"Row 1: child URL {url!r} does not end with /WMServer "
            "(expected .../arcgis/rest/services/<name>/WMServer)"
        )
        parent_only = Param(url)
        update_messages(parent_only, Param(None))
        assert parent_only.message == table.message.replace("Row 1: child", "parent")
    else:
        assert table.message is None


def test_row_errors_win_over_url_warnings():
    table = Param("x", rows=[["Ohio", "false", "http://ohio/x", ""]])
    update_messages(Param("http://hq/arcgis/rest/services/P/WMServer"), table)
    assert table.level == "error" and "Row 1" in table.message
