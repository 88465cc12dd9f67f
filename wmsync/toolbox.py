"""What WorkflowSync.pyt needs beyond its parameter definitions, testable without arcpy.

The ``.pyt`` keeps the registry, the parameters and the mapping of outputs; it passes
the ``arcpy`` module in, so plain tests drive everything here with a stand-in:

- :func:`fresh_import`: refreshing a toolbox in Pro re-executes only the ``.pyt``; this
  re-imports the whole ``wmsync`` package when a developer changed it.
- :func:`update_messages`: the dialog's validation (no network).
- :func:`run`: one tool run: the token (Pro's sign-in, else ``WMSYNC_TOKEN``; per
  server from the ``WMSYNC_CREDENTIALS`` file), the acting user (``WMSYNC_USER``, else
  the user signed in to the computer), the state store of stock servers
  (``WMSYNC_STATE``, else the default path), the engine call, Cancel and the closing
  messages.
- :class:`ArcpyListener`: engine callbacks -> tool messages and the step progressor,
  with every token the toolbox holds scrubbed from the text.
"""

from __future__ import annotations

import getpass
import importlib
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

from . import valuetable
from .auth import ThreadBoundToken
from .errors import WMSyncError, redact_url
from .progress import SyncListener
from .report import FAILED, SKIPPED, SYNCHRONIZED, SyncResult

__all__ = [
    "CREDENTIALS_ENV",
    "RELOAD_ENV",
    "ArcpyListener",
    "acting_user",
    "closing_summary",
    "fresh_import",
    "last_sync_table",
    "run",
    "state_path",
    "table_value",
    "tool_token",
    "update_messages",
]

RELOAD_ENV = "WMSYNC_RELOAD"
_STAMP = "_pyt_imported_at"

#: The step labels the engine sends ("<child>: <what>") and the phase each belongs to.
_PHASES = (
    ("sending changes to the parent", "Pulling"),
    ("receiving changes from the parent", "Pushing"),
    ("checked", "Checking"),
    ("checking", "Checking"),
)


# --------------------------------------------------------------------------- reloading


def _changed_since(package: str, stamp: float) -> bool:
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


def fresh_import(name: str) -> Any:
    """Import the module *name*, re-importing its whole top-level package when changed.

    Decision: drop every ``package.*`` module from ``sys.modules`` and import anew when
    a source file changed since the toolbox first imported the package. A whole-package
    re-import (rather than ``importlib.reload`` of single modules) keeps classes
    consistent: old and new modules never mix; with no edits nothing is reloaded, so
    other code in the same session keeps the very classes it imported.
    ``WMSYNC_RELOAD`` overrides the rule: ``1`` re-imports on every load, ``0`` never
    (test runs, where other code holds the modules while files may change).
    """
    package = name.split(".", 1)[0]
    module = sys.modules.get(package)
    if module is not None:
        stamp = getattr(module, _STAMP, None)
        setting = os.environ.get(RELOAD_ENV, "")
        if setting == "1" or (
            setting != "0" and stamp is not None and _changed_since(package, stamp)
        ):
            for loaded in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                del sys.modules[loaded]
            importlib.invalidate_caches()
    top = importlib.import_module(package)
    if getattr(top, _STAMP, None) is None:
        setattr(top, _STAMP, time.time())
    return importlib.import_module(name)


# --------------------------------------------------------------------------- the dialog


def table_value(param: Any) -> Any:
    """A value-table parameter as rows of Python values (unambiguous), else its text."""
    rows = param.values
    if rows is not None:
        return [list(row) for row in rows]
    return param.valueAsText


def _child_url_warnings(children: Any) -> List[str]:
    """The parent URL's /WMServer warning, for every child URL that earns it."""
    try:
        specs = valuetable.parse_children(children)
    except ValueError:
        return []  # the errors are reported instead
    found = []
    for spec in specs:
        warning = valuetable.check_parent_url(spec.url)
        if warning:  # one wording for parent and children
            found.append(f"Row {spec.row}: child " + warning.replace("parent ", "", 1))
    return found


def update_messages(url: Any, table: Any) -> None:
    """Validate the dialog: parent URL and child table parameters; no network.

    Row errors (and warnings) come from :mod:`wmsync.valuetable`, which is the authority
    on the rows: its verdict replaces the framework's (e.g. a value-list miss on
    ``True``, where Pro compares case-sensitively while docs/design.md §2 accepts
    ``true`` in any case). A parent or child URL that does not end with ``/WMServer``
    gets a warning.
    """
    if url.value and not url.isInputValueDerived() and not url.hasError():
        warning = valuetable.check_parent_url(url.valueAsText)
        if warning:
            url.setWarningMessage(warning)
    if table.value is None or table.isInputValueDerived():
        return  # empty (Pro reports a missing required value) or known only at run time
    parent = None if url.isInputValueDerived() else url.valueAsText
    children = table_value(table)
    found = valuetable.validate_children(children, parent)
    errors = [m.text for m in found if m.level == "error"]
    warnings = [m.text for m in found if m.level != "error"]
    if errors:
        table.setErrorMessage("\n".join(errors))
        return
    warnings += _child_url_warnings(children)
    if warnings:
        table.setWarningMessage("\n".join(warnings))
    elif table.hasError():
        table.clearMessage()


# --------------------------------------------------------------------------- running


def acting_user() -> Optional[str]:
    """The Workflow Manager user: ``WMSYNC_USER``, else the user signed in to the computer."""
    user = os.environ.get("WMSYNC_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment: the engine decides
        return None


def tool_token(arcpy: Any) -> Union[ThreadBoundToken, str, None]:
    """Pro's sign-in token (renewed on a 498, on this thread), else ``WMSYNC_TOKEN``."""
    get = getattr(arcpy, "GetSigninToken", None)
    if get is not None:
        source = ThreadBoundToken(get)
        if source.get():
            return source
    return os.environ.get("WMSYNC_TOKEN") or None


CREDENTIALS_ENV = "WMSYNC_CREDENTIALS"


def state_path() -> str:
    """The state store of stock servers: ``WMSYNC_STATE``, else the default path (the
    same rule as ``wmsync sync --state``; docs/stock.md)."""
    from .stock import default_state_path

    return str(default_state_path())


def _engine_access(
    token: Union[ThreadBoundToken, str, None], listener: ArcpyListener
) -> Tuple[Optional[Callable[[str], Any]], Any]:
    """(replica factory, state) for the engine: with ``WMSYNC_CREDENTIALS`` (a
    credentials file, as ``wmsync sync --credentials``) each server gets its own token,
    so one cluster can span offices with their own ArcGIS Server; stock servers go
    through the state store either way."""
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        return None, state_path()
    from .credentials import load_credentials, per_url_factory
    from .replica import default_replica_factory
    from .stock import StockReplicas

    credentials = load_credentials(path, on_secret=listener.add_secret)
    for secret in credentials.secrets:
        listener.add_secret(secret)
    builder = StockReplicas(state_path())
    user = acting_user()
    factory = per_url_factory(
        credentials,
        token,
        lambda source: default_replica_factory(user=user, token=source, stock=builder),
    )
    return factory, builder


@contextmanager
def tool_replicas(
    token: Union[ThreadBoundToken, str, None],
) -> Iterator[Callable[[str], Any]]:
    """Replicas for one run of a toolset tool: servers with the extensions through
    their client, stock servers through the state store (:func:`state_path`), whose
    repositories are let go when the tool ends."""
    from .replica import default_replica_factory
    from .stock import StockReplicas

    builder = StockReplicas(state_path())
    try:
        yield default_replica_factory(user=acting_user(), token=token, stock=builder)
    finally:
        builder.close()


def _phase_of(label: str) -> Optional[str]:
    what = label.rsplit(": ", 1)[-1].lower()
    for words, phase in _PHASES:
        if words in what:
            return phase
    return None


class ArcpyListener(SyncListener):
    """Engine callbacks -> tool messages and the step progressor (tool's thread only).

    The progressor label names the phase and how many children finished it
    ("Pulling: 2 of 3 children"), not whichever child's event came last. The phase
    comes from the optional *phase* of :meth:`step`, else from the engine's step label.
    """

    def __init__(
        self, arcpy: Any, messages: Any, token: Union[ThreadBoundToken, str, None] = None
    ) -> None:
        self._arcpy = arcpy
        self._messages = messages
        self._token = token
        self._secrets: List[str] = []  # from a credentials file
        self._children = 0
        self._settled = 0  # children whose steps all ended at once (failed their check)
        self._phase: Optional[str] = None
        self._done = 0

    def add_secret(self, secret: str) -> None:
        """Scrub *secret* too from now on (read from, or fetched for, a credentials file)."""
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def scrub(self, text: object) -> str:
        """*text* without any token the toolbox holds (the engine redacts already)."""
        text = str(text)
        if isinstance(self._token, ThreadBoundToken):
            secrets = self._token.secrets()
        else:
            secrets = [self._token] if self._token else []
        for secret in [*secrets, *self._secrets]:
            text = text.replace(secret, "***")
        return text

    def info(self, text: str) -> None:
        self._messages.addMessage(self.scrub(text))

    def warning(self, text: str) -> None:
        self._messages.addWarningMessage(self.scrub(text))

    def begin(self, total_steps: int, label: str) -> None:
        total = max(int(total_steps), 1)
        self._children = max(total // 2, 1)  # one step per child per phase
        self._arcpy.SetProgressor("step", self.scrub(label), 0, total, 1)

    def step(self, label: str, phase: Optional[str] = None) -> None:
        phase = phase or _phase_of(label) or self._phase
        if phase != self._phase:
            self._phase, self._done = phase, 0
        self._show()

    def step_done(self) -> None:
        self._arcpy.SetProgressorPosition()
        if self._phase is None:
            self._settled += 1  # before any phase: a child that failed its check
        else:
            self._done += 1
            self._show()

    def _show(self) -> None:
        if self._phase is None:
            return
        total = max(self._children - self._settled // 2, 0)
        self._arcpy.SetProgressorLabel(f"{self._phase}: {self._done} of {total} children")

    def cancelled(self) -> bool:
        if isinstance(self._token, ThreadBoundToken):
            self._token.serve()  # polled on the tool's thread: renew tokens here
        return bool(getattr(self._arcpy.env, "isCancelled", False))


def closing_summary(result: SyncResult) -> Optional[str]:
    """One line when some children failed (or the run was cancelled), else ``None``."""
    states = [child.state for child in result.children]
    failed = [child.name for child in result.children if child.state == FAILED]
    if not failed and not result.cancelled:
        return None
    connected = len(states) - states.count(SKIPPED)
    text = f"{states.count(SYNCHRONIZED)} of {connected} connected children synchronized"
    if failed:
        text += f"; not synchronized: {', '.join(failed)}"
    return text + (
        ". Their Last Synchronized time is unchanged, so the next run retries them"
        f" (status {result.status})."
    )


def _rows(result: SyncResult) -> str:
    """Last Synchronized as value-table text for a message: URLs without secrets."""
    rows = [
        [name, connected, redact_url(url), when]
        for name, connected, url, when in result.last_sync_rows
    ]
    return valuetable.format_rows(rows)


def last_sync_table(arcpy: Any, columns: Sequence[Sequence[str]], result: SyncResult) -> Any:
    """The Last Synchronized output as an ``arcpy.ValueTable`` of *columns*."""
    table = arcpy.ValueTable([column[0] for column in columns])
    for row in result.last_sync_rows:
        table.addRow(list(row))
    return table


def run(arcpy: Any, messages: Any, parent_url: str, parent_name: str, children: Any) -> SyncResult:
    """One run of the tool; returns the result whose outputs the ``.pyt`` sets.

    Failed children are warnings (docs/design.md §6: an error message would fail the
    tool and withhold the outputs), closed by a summary line. Status -1 and a Cancel
    end the tool as failed: an error message, then ``arcpy.ExecuteError`` -- what Pro
    does with a cancelled tool ("the tool will fail"), so a calling script or model
    never takes a cancelled run for a finished one.
    """
    from . import engine  # looked up at call time: tests replace engine.synchronize

    token = tool_token(arcpy)
    listener = ArcpyListener(arcpy, messages, token)
    auto_cancelling = getattr(arcpy.env, "autoCancelling", None)
    if auto_cancelling is not None:
        # Cancel is honoured by the engine at its safe points (listener.cancelled),
        # not by arcpy interrupting whichever line happens to run.
        arcpy.env.autoCancelling = False
    try:
        try:
            factory, state = _engine_access(token, listener)
        except WMSyncError as exc:
            text = listener.scrub(f"nothing was synchronized: {exc}")
            messages.addErrorMessage(text)
            raise arcpy.ExecuteError(text) from None
        result = engine.synchronize(
            parent_url,
            parent_name,
            children,
            user=acting_user(),
            token=token,
            listener=listener,
            replica_factory=factory,
            state=state,
        )
        summary = closing_summary(result)
        if result.status == -1 or result.cancelled:
            text = listener.scrub(
                "Cancelled: " + (summary or "stopped before any child synchronized")
                if result.cancelled
                else result.error or "nothing could be synchronized"
            )
            if result.cancelled and any(c.state == SYNCHRONIZED for c in result.children):
                messages.addMessage(listener.scrub("Last Synchronized so far: " + _rows(result)))
            messages.addErrorMessage(text)
            raise arcpy.ExecuteError(text)
        if summary:
            messages.addWarningMessage(listener.scrub(summary))
        return result
    finally:
        arcpy.ResetProgressor()
        if auto_cancelling is not None:
            arcpy.env.autoCancelling = auto_cancelling


# --------------------------------------------------------------------------- files

#: Export Job Data and Import Job Data (docs/design.md §11): label and description, and
#: the parameters (name, label, datatype, parameterType, direction); the status last.
EXPORT_TOOL = (
    "Export Job Data",
    "Writes a file of the job data changes a disconnected parent or child has not "
    "acknowledged yet, with its manifest (acknowledgement, SHA-256), to be imported there "
    "with Import Job Data.",
)
EXPORT_PARAMETERS = [
    ("Input_Repository_URL", "Input Repository URL", "GPString", "Required", "Input"),
    ("Input_Peer_Repository_Name", "Input Peer Repository Name", "GPString", "Required", "Input"),
    ("Output_File", "Output File", "DEFile", "Required", "Output"),
    ("Input_Register_Child", "Register New Child", "GPBoolean", "Optional", "Input"),
    ("Input_Child_URL", "Input Child URL", "GPString", "Optional", "Input"),
    ("Output_ExportStatus", "Export Status", "GPLong", "Derived", "Output"),
]
IMPORT_TOOL = (
    "Import Job Data",
    "Imports a file written by Export Job Data into a repository: checks its digest, "
    "recipient and cluster, imports it in one transaction and takes its acknowledgement. "
    "A repeated or older file changes nothing.",
)
IMPORT_PARAMETERS = [
    ("Input_File", "Input File", "DEFile", "Required", "Input"),
    ("Input_Repository_URL", "Input Repository URL", "GPString", "Required", "Input"),
    ("Output_ImportStatus", "Import Status", "GPLong", "Derived", "Output"),
]


def file_tool_parameters(arcpy: Any, specs: Sequence[Sequence[str]]) -> List[Any]:
    """The ``arcpy.Parameter`` list of a file tool (a Boolean starts unchecked)."""
    params = []
    for name, label, datatype, kind, direction in specs:
        param = arcpy.Parameter(
            name=name, displayName=label, datatype=datatype, parameterType=kind, direction=direction
        )
        if datatype == "GPBoolean":
            param.value = False
        params.append(param)
    return params


def file_tool_values(parameters: Sequence[Any]) -> List[Any]:
    """The inputs of a file tool in order, its status (last) left out: text, a Boolean
    as bool, an empty optional text as ""."""
    values: List[Any] = []
    for param in parameters[:-1]:
        if getattr(param, "datatype", "") in ("GPBoolean", "Boolean"):
            values.append(bool(param.value))
        else:
            values.append(param.valueAsText or "")
    return values


def run_export(
    arcpy: Any,
    messages: Any,
    url: str,
    peer: str,
    out: str,
    register_child: bool = False,
    child_url: str = "",
) -> int:
    """Export Job Data (docs/design.md §11): one call into :mod:`wmsync.filesync`.

    :returns: the status, 0; a refused export is an error message and
        ``arcpy.ExecuteError`` (nothing written).
    """
    from . import filesync

    token = tool_token(arcpy)
    listener = ArcpyListener(arcpy, messages, token)
    try:
        with tool_replicas(token) as factory:
            outcome = filesync.export_job_data(
                url,
                peer,
                out,
                register_child=register_child,
                child_url=child_url or "",
                replica_factory=factory,
            )
    except WMSyncError as exc:
        text = listener.scrub(f"Export refused, nothing written: {exc}")
        messages.addErrorMessage(text)
        raise arcpy.ExecuteError(text) from None
    messages.addMessage(listener.scrub(outcome.line()))
    messages.addMessage(listener.scrub(f"Written: {outcome.path}"))
    return 0


def run_import(arcpy: Any, messages: Any, path: str, url: str) -> int:
    """Import Job Data (docs/design.md §11): one call into :mod:`wmsync.filesync`.

    :returns: the status, 0; a refused file is an error message and
        ``arcpy.ExecuteError`` (nothing changed).
    """
    from . import filesync

    token = tool_token(arcpy)
    listener = ArcpyListener(arcpy, messages, token)
    try:
        with tool_replicas(token) as factory:
            outcome = filesync.import_job_data(url, path, replica_factory=factory)
    except WMSyncError as exc:
        text = listener.scrub(f"Import refused, nothing changed: {exc}")
        messages.addErrorMessage(text)
        raise arcpy.ExecuteError(text) from None
    for warning in outcome.warnings:
        messages.addWarningMessage(listener.scrub(f"{outcome.target}: {warning}"))
    messages.addMessage(listener.scrub(outcome.line()))
    return 0
