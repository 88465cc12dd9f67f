"""``wmsync plan``: what a run would move, changing nothing (docs/design.md §5).

The same reading, checks and rules as a run (:mod:`wmsync.engine`), but only counts
are asked for (``count_changes``, no export file) and nothing is written: no node row,
no id block, no renumbering (a joining child's renumbering is asked as a dry run).
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from .auth import TokenLike
from .engine import (
    StateLike,
    make_factory,
    not_connected_reason,
    read_inputs,
    stock_builder,
    stock_findings,
)
from .errors import RepositoryError, SyncRefused, ValueTableError, WMSyncError
from .idblocks import JOB_ID_BLOCK, allocate_blocks, joining
from .membership import node_row
from .pairrules import gone_back, read_child, read_parent, repository_kind, watermarks
from .replica import Replica, ReplicaFactory
from .report import FAILED, PLANNED, PlanEntry, PlanResult


def plan(
    parent_url: str,
    parent_name: str,
    children: Any,
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    replica_factory: Optional[ReplicaFactory] = None,
    client_factory: Optional[ReplicaFactory] = None,
    full: bool = False,
    timeout: float = 60.0,
    verify: Any = True,
    state: StateLike = None,
) -> PlanResult:
    """Report per child what a run would move, changing nothing (``--dry-run``).

    The pull is exact; the push is predicted from the parent's own changes plus what the
    other children's pulls would bring (everything, for a full exchange). Only counts
    are asked for (``count_changes``): no server writes an export file. *state* as for
    :func:`synchronize` (a stock server is scanned into its shadow, never written to).
    """
    try:
        inputs = read_inputs(children)
    except ValueTableError as exc:
        return PlanResult(-1, parent_name, parent_url, error=f"the child table was refused: {exc}")
    entries = [PlanEntry(spec, error=not_connected_reason(spec)) for spec in inputs.specs]
    result = PlanResult(0, parent_name, parent_url, entries)
    if not inputs.connected:
        result.status, result.error = -1, "no connected child repository to synchronize"
        return result
    try:
        builder = stock_builder(state, parent_url, parent_name, inputs.connected)
    except (OSError, WMSyncError) as exc:
        result.status = -1
        result.error = f"the state store of stock servers cannot be used: {exc}"
        return result
    try:
        factory = make_factory(
            replica_factory, client_factory, user, token, timeout, verify, builder
        )
        _plan(result, entries, parent_url, parent_name, factory, full)
        result.warnings, _ = stock_findings(builder, set())
    finally:
        if builder is not None:
            builder.close()
    return result


def _plan(
    result: PlanResult,
    entries: List[PlanEntry],
    parent_url: str,
    parent_name: str,
    factory: ReplicaFactory,
    full: bool,
) -> None:
    try:
        result.parent_name, parent_info = read_parent(factory, parent_url, parent_name)
    except (SyncRefused, RepositoryError) as exc:
        result.status, result.error = -1, f"parent {parent_name}: {exc}"
        return
    result.parent_kind = repository_kind(parent_info)
    parent = factory(parent_url)
    blocks = allocate_blocks(parent_info, [e.spec for e in entries if e.spec.connected])
    try:
        own = {
            entry.spec.row: _plan_child(
                entry,
                parent,
                parent_info,
                result.parent_name,
                parent_url,
                factory,
                full,
                blocks[entry.spec.row],
            )
            for entry in entries
            if entry.spec.connected
        }
    finally:
        parent.close()
    planned = [entry for entry in entries if entry.state == PLANNED]
    for entry in planned:
        # The push sends the parent's own changes plus what the pulls bring: the other
        # children's, and with no echo cut (a full exchange) the child's own as well.
        brought = sum(other.pull for other in planned if other is not entry or entry.full_exchange)
        entry.push_estimate = own[entry.spec.row] + brought
    result.status = sum(1 for entry in entries if entry.state == FAILED)


def _plan_child(
    entry: PlanEntry,
    parent: Replica,
    parent_info: Mapping[str, Any],
    parent_name: str,
    parent_url: str,
    factory: ReplicaFactory,
    full: bool,
    block: int,
) -> int:
    """Fill in the entry's pull and the jobs it would renumber as it joins (into
    *block*); return the parent's own changes for this child."""
    try:
        child = factory(entry.spec.url)
    except WMSyncError as exc:
        entry.state, entry.error = FAILED, str(exc)
        return 0
    try:
        name, info = read_child(child, entry.spec, parent_name, parent_url)
        entry.repository = name
        entry.kind = repository_kind(info)
        p_row, c_row = node_row(parent_info, name), node_row(info, parent_name)
        trusted, p_mark, c_mark = watermarks(p_row, c_row, full)
        if gone_back(info, p_row, c_row) or gone_back(parent_info, c_row, p_row):
            trusted, p_mark, c_mark = False, 0, 0
        entry.full_exchange = not trusted
        if joining(node_row(info, name), c_row, block):
            entry.renumber = child.renumber_own_jobs(
                name, parent_name, block, JOB_ID_BLOCK, dry_run=True
            )
        # The run logs an activity record on each renumbered job: they travel too.
        entry.pull = child.count_changes(c_mark, parent_name if trusted else None) + len(
            entry.renumber
        )
        own = parent.count_changes(p_mark, name if trusted else None)
        entry.state, entry.error = PLANNED, None
        return own
    except WMSyncError as exc:
        entry.state, entry.error = FAILED, str(exc)
        return 0
    finally:
        child.close()
