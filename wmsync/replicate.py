"""Replicate Job Data: join one child to a cluster (docs/design.md §11).

The membership checks of docs/design.md §4 run first, so that a refusal (another
cluster, another repository at that URL, the parent itself) is one clear error and
nothing is changed. Then the join is what the engine already does for a new child: a
:func:`wmsync.engine.synchronize` of that one child with ``full=True`` registers it,
gives it its job id block, moves the jobs the child made itself into that block (on
the child, each with an activity record) and exchanges everything both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from . import engine, pairrules
from .errors import RepositoryError, SyncRefused, ValueTableError
from .idblocks import JOB_ID_BLOCK
from .membership import node_row
from .progress import SyncListener
from .replica import ReplicaFactory
from .report import SyncResult, renumbered_text
from .valuetable import parse_children

__all__ = ["ReplicateResult", "replicate"]


@dataclass
class ReplicateResult:
    """The join's run, plus the id block the child holds now.

    ``status``: 0 joined, 1 the exchange failed (the next replicate or sync retries it),
    -1 refused before anything was changed (``error`` says why).
    """

    sync: SyncResult
    id_block: Optional[List[int]] = None

    @property
    def status(self) -> int:
        return self.sync.status

    @property
    def error(self) -> Optional[str]:
        if self.sync.error:
            return self.sync.error
        failed = [c.error for c in self.sync.children if c.error]
        return failed[0] if failed and self.status else None

    def to_dict(self) -> Dict[str, Any]:
        return {**self.sync.to_dict(), "id_block": self.id_block}

    def lines(self) -> List[str]:
        if self.status < 0 or not self.sync.children:
            return [f"not replicated, nothing changed: {self.error}"]
        child = self.sync.children[0]
        if self.status:
            return [
                f"{child.name}: the exchange failed: {child.error} (run it again: "
                "what was not exchanged is sent next time)"
            ]
        out = [f"{child.name} joined the cluster of {self.sync.parent_name}"]
        if self.id_block:
            first, size = self.id_block
            out.append(f"job id block: {first}-{first + size - 1}")
        out.append(
            f"sent to the parent: {child.sent} elements; received from it: "
            f"{child.received}; conflicts: {child.conflicts}; jobs renumbered: "
            f"{child.renumbered}"
        )
        if child.renumbered_ids:
            # Its own jobs moved into its block as it joined (docs/design.md §4).
            out.append(f"ids changed: {renumbered_text(child.renumbered_ids)}")
        return out


def replicate(
    parent_url: str,
    parent_name: str,
    child_url: str,
    child_name: str,
    factory: ReplicaFactory,
    *,
    listener: Optional[SyncListener] = None,
) -> ReplicateResult:
    """Join the child at *child_url* to the cluster of *parent_name*: membership
    checks, id block, full exchange. Never raises for a server's refusal: the result
    says it (status -1)."""
    row = [child_name, "true", child_url.rstrip("/"), ""]
    try:
        parent_name, _ = pairrules.read_parent(factory, parent_url, parent_name)
        spec = parse_children([row])[0]
        child = factory(spec.url)
        try:
            pairrules.read_child(child, spec, parent_name, parent_url.rstrip("/"))
        finally:
            child.close()
    except (SyncRefused, RepositoryError, ValueTableError) as exc:
        from datetime import datetime, timezone

        moment = datetime.now(timezone.utc)
        return ReplicateResult(
            SyncResult(-1, parent_name, parent_url, moment, moment, error=f"{child_name}: {exc}")
        )
    result = engine.synchronize(
        parent_url,
        parent_name,
        [row],
        replica_factory=factory,
        listener=listener,
        full=True,
        max_workers=1,
    )
    outcome = ReplicateResult(result)
    if result.status == 0:
        joined = result.children[0].name
        parent = factory(parent_url.rstrip("/"))
        try:
            found = node_row(parent.replication_info(), joined)
        finally:
            parent.close()
        if found is not None and found.get("jobIdStart") is not None:
            outcome.id_block = [
                int(found["jobIdStart"]),
                int(found.get("jobIdBlock") or JOB_ID_BLOCK),
            ]
    return outcome
