"""The toolset's tools in the toolbox (docs/design.md §11): Cluster Status, Clear Job
Replication Information, Replicate Job Data. ``WorkflowSync.pyt`` declares their
parameters and calls one function here per tool (as it calls :func:`wmsync.toolbox.run`
for Synchronize Job Data); everything is testable without arcpy.

Each tool has Esri's name where Esri has the tool, a repository URL where Esri's takes a
``.jtc`` connection file, and a derived Long status (docs/design.md §6): a repository
that could not be handled is a warning and counts in the status; "nothing could be
done" is an error message and ``arcpy.ExecuteError``.
"""

from __future__ import annotations

from typing import Any, List, NoReturn, Optional, Sequence, Tuple

from . import valuetable
from .errors import WMSyncError
from .replica import ReplicaFactory
from .toolbox import ArcpyListener, tool_replicas, tool_token

__all__ = [
    "CHILD_COLUMNS",
    "STATUS_COLUMNS",
    "check_url_parameter",
    "run_clear",
    "run_replicate",
    "run_status",
    "update_replicate_messages",
]

#: Columns of Cluster Status's output table (one row per repository).
STATUS_COLUMNS = [
    ["GPString", "repository"],
    ["GPString", "role"],
    ["GPString", "id_block"],
    ["GPString", "last_sync"],
    ["GPString", "waiting_to_parent"],
    ["GPString", "waiting_to_child"],
    ["GPString", "conflicts"],
    ["GPString", "reachable"],
    ["GPString", "URL"],
]
#: Replicate Job Data's child table, as Esri's: name, connected, URL.
CHILD_COLUMNS = [["GPString", "child_repository"], ["GPString", "connected"], ["GPString", "URL"]]


# --------------------------------------------------------------------------- validation


def check_url_parameter(param: Any, role: str) -> None:
    """A repository URL parameter, checked with no network: not an http(s) URL is an
    error, one not ending with /WMServer a warning (wmsync.valuetable's checks)."""
    if not param.value or param.isInputValueDerived() or param.hasError():
        return
    found = valuetable.check_parent_url(param.valueAsText)
    if not found:
        return
    text = found.replace("parent URL", f"{role} URL", 1)
    if "does not end with /WMServer" in found:
        param.setWarningMessage(text)
    else:
        param.setErrorMessage(text)


def update_replicate_messages(url: Any, table: Any) -> None:
    """Replicate Job Data's dialog: the parent URL and the child rows, as Synchronize
    Job Data validates them (the rows have no time column)."""
    from .toolbox import update_messages

    check_url_parameter(url, "parent")  # first: a non-http URL is an error here
    update_messages(url, table)


# --------------------------------------------------------------------------- running


def _fail(arcpy: Any, messages: Any, listener: ArcpyListener, text: str) -> NoReturn:
    text = listener.scrub(text)
    messages.addErrorMessage(text)
    raise arcpy.ExecuteError(text)


def run_status(
    arcpy: Any, messages: Any, parent_url: str, parent_name: str, max_age_hours: Optional[float]
) -> Tuple[int, Any]:
    """Cluster Status: (status 0/1/2, the output table). Status 2 (nothing readable)
    fails the tool."""
    from .status import cluster_status

    token = tool_token(arcpy)
    with tool_replicas(token) as factory:
        listener = ArcpyListener(arcpy, messages, token)
        arcpy.SetProgressor("default", "Reading the cluster")
        try:
            result = cluster_status(
                parent_url, parent_name, factory, max_age_hours=max_age_hours or None
            )
            if result.code == 2:
                _fail(
                    arcpy,
                    messages,
                    listener,
                    f"parent {parent_name}: {result.parent.error or 'nothing readable'}",
                )
            lines = result.lines()
            for line in lines:
                if line.startswith("warning: "):
                    listener.warning(line[len("warning: ") :])
                elif not line.startswith("error: "):
                    listener.info(line)
            table = arcpy.ValueTable([c[0] for c in STATUS_COLUMNS])
            for repo in result.repositories:
                table.addRow([listener.scrub(cell) for cell in _status_row(repo)])
            return result.code, table
        finally:
            arcpy.ResetProgressor()


def _status_row(repo: Any) -> List[str]:
    data = repo.to_dict()
    block = data["id_block"]

    def shown(value: Any) -> str:
        return "" if value is None else str(value)

    return [
        data["name"],
        data["role"],
        "" if not block else f"{block[0]}-{block[0] + block[1] - 1}",
        shown(data["last_sync"]),
        shown(data["waiting_to_parent"]),
        shown(data["waiting_to_child"]),
        shown(data["conflicts"]),
        "true" if data["reachable"] else "false",
        data["url"],
    ]


def run_clear(
    arcpy: Any, messages: Any, url: str, name: Optional[str], child: Optional[str]
) -> int:
    """Clear Job Replication Information on the repository at *url*:

    - with *child*: remove that child from the cluster whose parent is at *url*;
    - else, when the repository is a parent: the whole cluster (it and every reachable
      child);
    - else: the repository's own rows about its cluster.

    Returns how many repositories could not be cleared on their side (warnings).
    """
    from .clear import clear_cluster, clear_repository

    token = tool_token(arcpy)
    with tool_replicas(token) as factory:
        listener = ArcpyListener(arcpy, messages, token)
        arcpy.SetProgressor("default", "Clearing job replication information")
        try:
            try:
                own, is_parent = _role(factory, url)
                if child or is_parent:
                    result = clear_cluster(url, name or own, factory, child=child or None)
                else:
                    result = clear_repository(url, factory, name or None)
            except WMSyncError as exc:
                _fail(arcpy, messages, listener, f"nothing was cleared: {exc}")
            for line, repo in zip(result.lines(), result.repositories):
                (listener.warning if repo.error else listener.info)(line)
            listener.info(result.lines()[-1])
            return result.status
        finally:
            arcpy.ResetProgressor()


def _role(factory: ReplicaFactory, url: str) -> Tuple[str, bool]:
    """The repository's own name, and whether it is the parent of a cluster."""
    from .membership import same_name

    replica = factory(url)
    try:
        info = replica.replication_info()
    finally:
        replica.close()
    own = str(info.get("repository") or "")
    rows = [n for n in info.get("nodes") or [] if isinstance(n, dict)]
    children = [
        n for n in rows if not n.get("isParent") and not same_name(str(n.get("name", "")), own)
    ]
    return own, bool(children)


def run_replicate(
    arcpy: Any, messages: Any, parent_url: str, parent_name: str, children: Any
) -> Tuple[int, List[List[str]]]:
    """Replicate Job Data: join every connected child of the table, one after the
    other. Returns (how many failed or were refused, Last Synchronized rows); -1 (no
    connected child, or none could join) fails the tool."""
    from .replicate import replicate

    token = tool_token(arcpy)
    with tool_replicas(token) as factory:
        listener = ArcpyListener(arcpy, messages, token)
        try:
            specs = valuetable.parse_children(children)
        except WMSyncError as exc:
            _fail(arcpy, messages, listener, f"the child table was refused: {exc}")
        connected = [spec for spec in specs if spec.connected]
        if not connected:
            _fail(arcpy, messages, listener, "no connected child repository to replicate")
        rows: List[List[str]] = []
        failed = 0
        arcpy.SetProgressor("step", "Replicating job data", 0, len(connected), 1)
        try:
            for spec in specs:
                if not spec.connected:
                    listener.warning(f"{spec.name} skipped: not connected")
                    rows.append([spec.name, spec.connected_text, spec.url, ""])
                    continue
                arcpy.SetProgressorLabel(f"Replicating {spec.name}")
                result = replicate(
                    parent_url, parent_name, spec.url, spec.name, factory, listener=_Quiet(listener)
                )
                for line in result.lines():
                    (listener.warning if result.status else listener.info)(line)
                failed += 1 if result.status else 0
                time = ""
                if result.sync.children and result.status == 0:
                    time = result.sync.last_sync_rows[0][3]
                rows.append([spec.name, "true", spec.url, time])
                arcpy.SetProgressorPosition()
            if failed == len(connected):
                _fail(arcpy, messages, listener, "no child could be replicated")
            return failed, rows
        finally:
            arcpy.ResetProgressor()


class _Quiet(ArcpyListener):
    """The engine's messages during a join, without its own progressor (the tool's
    step progressor counts children)."""

    def __init__(self, outer: ArcpyListener) -> None:
        self._outer = outer

    def info(self, text: str) -> None:
        self._outer.info(text)

    def warning(self, text: str) -> None:
        self._outer.warning(text)

    def begin(self, total_steps: int, label: str) -> None:
        return None

    def step(self, label: str, phase: Optional[str] = None) -> None:
        return None

    def step_done(self) -> None:
        return None

    def cancelled(self) -> bool:
        return self._outer.cancelled()


def last_sync_table(arcpy: Any, rows: Sequence[Sequence[str]]) -> Any:
    """Replicate Job Data's Last Synchronized output: four columns, as Synchronize Job
    Data's input takes them (a chain can go straight on to synchronizing)."""
    table = arcpy.ValueTable(["GPString"] * 4)
    for row in rows:
        table.addRow(list(row))
    return table
