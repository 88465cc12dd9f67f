"""Job id blocks (docs/design.md §4, "A job has one id on every repository").

The parent hands every child a disjoint block of job ids when it registers it, and
each repository numbers the jobs it creates from its own block. This module picks and
claims blocks on the parent's node table; it is shared by connected runs
(:mod:`wmsync.engine`) and joins by file (:mod:`wmsync.filesync`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from .errors import SyncRefused
from .membership import node_row, same_name
from .replica import Replica
from .valuetable import ChildSpec

JOB_ID_BLOCK = 1_000_000  # ids each repository numbers its new jobs from
CLAIM_ATTEMPTS = 5  # writes of a new child's block before giving up (concurrent first runs)


def block_ends(nodes: List[Mapping[str, Any]]) -> List[int]:
    """Where each node row's job id block ends (exclusive)."""
    ends = []
    for node in nodes:
        start = int_or_none(node.get("jobIdStart"))
        if start is not None:
            ends.append(start + (int_or_none(node.get("jobIdBlock")) or JOB_ID_BLOCK))
    return ends


def _overlaps(node: Mapping[str, Any], start: int) -> bool:
    other = int_or_none(node.get("jobIdStart"))
    if other is None:
        return False
    size = int_or_none(node.get("jobIdBlock")) or JOB_ID_BLOCK
    return other < start + JOB_ID_BLOCK and start < other + size


def claim_block(parent: Replica, name: str, url: str, block: int) -> int:
    """Write *name*'s job id block on the parent, read it back, and return the block.

    Another run registering another child at the same moment may have picked the same
    block from the same parent state. So after each write the parent is read again, and
    if any other row overlaps the block, this run moves to a fresh one and checks again.
    A block is kept only when a read made after its write shows no overlap; two runs
    cannot both keep one, as each would have had to read before the other wrote. Runs
    that collide together move apart by their names' order among the colliding rows.
    """
    for _ in range(CLAIM_ATTEMPTS):
        parent.update_node(
            name,
            server_url=url,
            is_parent=False,
            is_connected=True,
            job_id_start=block,
            job_id_block=JOB_ID_BLOCK,
        )
        nodes = node_rows(parent.replication_info())
        others = [n for n in nodes if not same_name(str(n.get("name", "")), name)]
        colliding = [str(n.get("name", "")).lower() for n in others if _overlaps(n, block)]
        if not colliding:
            return block
        rank = sorted([*colliding, name.lower()]).index(name.lower())
        block = max(block_ends(nodes)) + rank * JOB_ID_BLOCK
    raise SyncRefused(
        "no free job id block could be claimed on the parent; other runs kept taking "
        "the same ones. Run again."
    )


def allocate_blocks(parent_info: Mapping[str, Any], specs: List[ChildSpec]) -> Dict[int, int]:
    """Each child's job id block by table row: the one the parent holds for it, else a
    fresh one past every block the parent knows, disjoint from the others."""
    next_start = max([1 + JOB_ID_BLOCK, *block_ends(node_rows(parent_info))])
    blocks: Dict[int, int] = {}
    for spec in specs:
        node = node_row(parent_info, spec.name)
        start = int_or_none(node.get("jobIdStart")) if node else None
        if start is None:
            start = next_start
            next_start += JOB_ID_BLOCK
        blocks[spec.row] = start
    return blocks


def joining(
    own_row: Optional[Mapping[str, Any]], row_of_parent: Optional[Mapping[str, Any]], block: int
) -> bool:
    """Whether a child joins the parent now, its own jobs to be moved into *block*
    (docs/design.md §4): it holds no row of the parent (it never synchronized with it,
    or left its cluster) and not yet this block. A child that keeps a row of the parent
    may have sent its jobs there already: their ids are left as they are."""
    handed = own_row is not None and int_or_none(own_row.get("jobIdStart")) == block
    return row_of_parent is None and not handed


def node_rows(info: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    return [n for n in info.get("nodes") or [] if isinstance(n, Mapping)]


def int_or_none(value: Any) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
