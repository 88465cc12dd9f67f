"""Workflow Sync: an open re-creation of Workflow Manager's Synchronize Job Data tool.

This file is a registry plus parameter mapping (DESIGN.md sections 2, 3 and 6): it
defines the parameters, asks ``wmsync.valuetable`` for validation text, calls
``wmsync.synchronize`` once and sets the two derived outputs. Everything else lives in
the ``wmsync`` package, which sits beside this file. Keep this file ASCII.
"""

import getpass
import importlib
import os
import queue
import sys
import threading
import time

# The wmsync package is installed beside this file: make it importable wherever Pro
# runs from (Pro's current directory is not the toolbox folder).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import arcpy  # noqa: E402

_RELOAD_ENV = "WMSYNC_RELOAD"


def _changed_since(package, stamp):
    """True when a loaded module of *package* has a source file newer than *stamp*."""
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        path = getattr(module, "__file__", None)
        try:
            if path and os.path.getmtime(path) > stamp:
                return True
        except OSError:
            continue
    return False


def _fresh_import(package):
    """Import *package*, re-importing all of it when a developer changed its code.

    Refreshing a toolbox in Pro re-executes only the .pyt, not the modules it imports,
    so edits to wmsync would otherwise need a Pro restart. Decision: drop every
    ``package.*`` module from ``sys.modules`` and import them anew when a source file
    changed since this toolbox first imported the package. The environment variable
    WMSYNC_RELOAD overrides that: 1 re-imports on every load (in Pro's Python window:
    ``os.environ["WMSYNC_RELOAD"] = "1"``), 0 never does (test runs, where other code
    holds the modules while files may change). A whole-package re-import (rather than
    ``importlib.reload`` of single modules) keeps classes consistent: old and new
    modules never mix. With no edits nothing is reloaded, so other code in the same
    session keeps the very classes it imported.
    """
    module = sys.modules.get(package)
    if module is not None:
        stamp = getattr(module, "_pyt_imported_at", None)
        setting = os.environ.get(_RELOAD_ENV, "")
        if setting == "1" or (
            setting != "0" and stamp is not None and _changed_since(package, stamp)
        ):
            for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                del sys.modules[name]
            importlib.invalidate_caches()
    module = importlib.import_module(package)
    if getattr(module, "_pyt_imported_at", None) is None:
        module._pyt_imported_at = time.time()
    return module


_fresh_import("wmsync")
from wmsync import valuetable  # noqa: E402
from wmsync.progress import SyncListener  # noqa: E402

PARENT_URL = "Input_Parent_Repository_URL"
PARENT_NAME = "Input_Parent_Repository_Name"
CHILDREN = "Input_Multi_Name"
STATUS = "Output_SynchronizeReplicaStatus"
LAST_SYNC = "Output_LastSync"

#: The four columns of the child table and of Last Synchronized (DESIGN.md section 2).
#: last_sync_time is a String column, not a Date: a GPDate column is parsed with the
#: system locale (pyt-toolbox.md section 3) and would mangle Esri's sample
#: "2011-08-08 12:00" on a non-ISO machine; wmsync.valuetable reads the time instead.
COLUMNS = [
    ["GPString", "child_repository"],
    ["GPString", "connected"],
    ["GPString", "URL"],
    ["GPString", "last_sync_time"],
]


class Toolbox:
    def __init__(self):
        self.label = "Workflow Sync"
        self.alias = "wmx"
        self.description = (
            "Synchronizes Workflow Manager job data between a parent repository and its "
            "child repositories (an open re-creation of Synchronize Job Data)."
        )
        self.tools = [SynchronizeJobData]


class SynchronizeJobData:
    def __init__(self):
        self.label = "Synchronize Job Data"
        self.description = (
            "Two-way synchronization of a Workflow Manager cluster: every connected child's "
            "changes go to the parent, then the parent's consolidated changes go to all "
            "children."
        )
        self.canRunInBackground = False  # ArcMap only; Pro ignores it

    def getParameterInfo(self):
        parent_url = arcpy.Parameter(
            name=PARENT_URL, displayName="Input Parent Repository URL",
            datatype="GPString", parameterType="Required", direction="Input",
        )
        parent_name = arcpy.Parameter(
            name=PARENT_NAME, displayName="Input Parent Repository Name",
            datatype="GPString", parameterType="Required", direction="Input",
        )
        children = arcpy.Parameter(
            name=CHILDREN, displayName="Input Multi Name",
            datatype="GPValueTable", parameterType="Required", direction="Input",
        )
        children.columns = [list(c) for c in COLUMNS]  # columns before filters
        children.filters[1].type = "ValueList"
        children.filters[1].list = ["true", "false"]
        status = arcpy.Parameter(
            name=STATUS, displayName="Status of Replica Synchronization",
            datatype="GPLong", parameterType="Derived", direction="Output",
        )
        last_sync = arcpy.Parameter(
            name=LAST_SYNC, displayName="Last Synchronized",
            datatype="GPValueTable", parameterType="Derived", direction="Output",
        )
        last_sync.columns = [list(c) for c in COLUMNS]
        return [parent_url, parent_name, children, status, last_sync]

    def isLicensed(self):
        return True

    def updateParameters(self, parameters):
        # Runs on every change in the dialog: nothing to derive, nothing heavy.
        return

    def updateMessages(self, parameters):
        """Row errors and a parent-URL warning from wmsync.valuetable; no network."""
        p = _by_name(parameters)
        url = p[PARENT_URL]
        if url.value and not url.isInputValueDerived() and not url.hasError():
            warning = valuetable.check_parent_url(url.valueAsText)
            if warning:
                url.setWarningMessage(warning)
        table = p[CHILDREN]
        if table.value is None or table.isInputValueDerived():
            return  # empty (Pro reports a missing required value) or known only at run time
        parent = None if url.isInputValueDerived() else url.valueAsText
        found = valuetable.validate_children(_table_value(table), parent)
        errors = [m.text for m in found if m.level == "error"]
        warnings = [m.text for m in found if m.level != "error"]
        # wmsync.valuetable is the authority on the rows: its verdict replaces the
        # framework's (e.g. a value-list miss on "True" where Pro compares case-sensitively,
        # while DESIGN.md accepts true in any case).
        if errors:
            table.setErrorMessage("\n".join(errors))
        elif warnings:
            table.setWarningMessage("\n".join(warnings))
        elif table.hasError():
            table.clearMessage()

    def execute(self, parameters, messages):
        from wmsync.engine import synchronize
        from wmsync.errors import ValueTableError

        p = _by_name(parameters)
        signin = _signin_token()
        token = _SigninToken(signin) if signin else os.environ.get("WMSYNC_TOKEN") or None
        listener = _ArcpyListener(messages, token)
        auto_cancelling = getattr(arcpy.env, "autoCancelling", None)
        if auto_cancelling is not None:
            # Cancel is honoured by the engine at its safe points (listener.cancelled),
            # not by arcpy interrupting whichever line happens to run.
            arcpy.env.autoCancelling = False
        try:
            try:
                result = synchronize(
                    p[PARENT_URL].valueAsText,
                    p[PARENT_NAME].valueAsText,
                    _table_value(p[CHILDREN]),
                    user=_user(),
                    token=token,
                    listener=listener,
                )
                status, error = result.status, result.error
            except ValueTableError as exc:
                result, status, error = None, -1, f"the child table was refused: {exc}"
            p[STATUS].value = status
            if status == -1 or result is None:
                text = listener.scrub(error or "nothing could be synchronized")
                messages.addErrorMessage(text)
                raise arcpy.ExecuteError(text)
            # Failed children were reported as warnings by the engine (DESIGN.md section 6):
            # an error message would fail the tool and withhold the outputs.
            table = arcpy.ValueTable([c[0] for c in COLUMNS])
            for row in result.last_sync_rows:
                table.addRow(list(row))
            p[LAST_SYNC].value = table
        finally:
            arcpy.ResetProgressor()
            if auto_cancelling is not None:
                arcpy.env.autoCancelling = auto_cancelling


def _by_name(parameters):
    return {param.name: param for param in parameters}


def _table_value(param):
    """The child table as rows of Python values (unambiguous), else its text."""
    rows = param.values
    if rows is not None:
        return [list(row) for row in rows]
    return param.valueAsText


def _signin_token():
    """The token of Pro's signed-in portal, or None (signed out, or no such function)."""
    get = getattr(arcpy, "GetSigninToken", None)
    info = get() if get is not None else None
    if isinstance(info, dict) and info.get("token"):
        return info["token"]
    return None


class _SigninToken:
    """Pro's sign-in token as a wmsync token source, renewed on a 498 (expired).

    A renewal calls ``arcpy.GetSigninToken`` again, and arcpy may only be called from
    the tool's own thread. The engine's workers ask for a renewal from theirs, so their
    request waits in a queue until the tool's thread serves it: the listener does that
    each time the engine polls it for Cancel (every 0.1 s while work runs).
    """

    WAIT_SECONDS = 30.0  # a worker gives up on a renewal the tool's thread never served

    def __init__(self, token):
        self._token = token
        self._seen = [token]  # every token handed out, for the messages' redaction
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._requests = queue.Queue()

    def get(self):
        with self._lock:
            return self._token

    def refresh(self):
        """Renew (on the tool's thread); True when the token now differs from before."""
        before = self.get()
        if threading.get_ident() == self._owner:
            self._renew()
        else:
            done = threading.Event()
            self._requests.put(done)
            if not done.wait(self.WAIT_SECONDS):
                return False
        after = self.get()
        return after is not None and after != before

    def serve(self):
        """Serve the workers' pending renewals; call on the tool's thread only."""
        while True:
            try:
                done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                self._renew()
            finally:
                done.set()

    def secrets(self):
        with self._lock:
            return list(self._seen)

    def _renew(self):
        fresh = _signin_token()
        with self._lock:
            if fresh and fresh != self._token:
                self._token = fresh
                self._seen.append(fresh)

    def __repr__(self):  # never show the token itself
        return "_SigninToken(***)"


def _user():
    """The Workflow Manager user: WMSYNC_USER, else the OS user."""
    user = os.environ.get("WMSYNC_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment: the engine decides
        return None


class _ArcpyListener(SyncListener):
    """Engine callbacks -> tool messages and the step progressor (calling thread only)."""

    def __init__(self, messages, token=None):
        self._messages = messages
        self._token = token  # a text, a _SigninToken, or None

    def scrub(self, text):
        # The engine redacts already; this guards the secrets the toolbox holds.
        text = str(text)
        if isinstance(self._token, _SigninToken):
            secrets = self._token.secrets()
        else:
            secrets = [self._token] if self._token else []
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def info(self, text):
        self._messages.addMessage(self.scrub(text))

    def warning(self, text):
        self._messages.addWarningMessage(self.scrub(text))

    def begin(self, total_steps, label):
        arcpy.SetProgressor("step", self.scrub(label), 0, max(int(total_steps), 1), 1)

    def step(self, label):
        arcpy.SetProgressorLabel(self.scrub(label))

    def step_done(self):
        arcpy.SetProgressorPosition()

    def cancelled(self):
        if isinstance(self._token, _SigninToken):
            self._token.serve()  # polled on the tool's thread: renew tokens here
        return bool(getattr(arcpy.env, "isCancelled", False))
