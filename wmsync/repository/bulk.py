"""Bulk loading for benchmarks: many jobs created or changed in one transaction, as
functions of a :class:`~wmsync.repository.store.Store` (which offers them as
``bulk_insert_jobs`` and ``bulk_update_jobs`` too)."""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from wmsync.model import new_guid

from . import catalog
from .records import StoreError
from .tables import COLUMNS, dumps

if TYPE_CHECKING:
    from .store import Store


def insert_jobs(
    store: Store,
    count: int,
    *,
    job_type_id: int = 1,
    user: str = catalog.DEFAULT_USER,
    fields: Optional[Mapping[str, str]] = None,
    name_prefix: str = "Job",
) -> List[int]:
    """Create *count* jobs as local edits in one transaction (one generation).

    Fast: one ``executemany``, no activity records. Ids come from this repository's
    allocator (consecutive from :meth:`Session.next_id`).

    :param fields: extra content fields for every job.
    :returns: the new jobs' ids.
    """
    if count <= 0:
        return []
    with store.atomic() as session:
        job_type = session.by_id("JobType", job_type_id)
        if job_type is None:
            raise StoreError(f"no job type {job_type_id}")
        first = session.next_id("Job")
        gen = session.new_generation()
        now = store.now_ms()
        vv = dumps({store.repository: 1})
        ids = list(range(first, first + count))
        base: Dict[str, str] = {
            "createdBy": user,
            "ownedBy": user,
            "assignedType": "0",
            "jobType": job_type.guid,
            "priority": "0",
            "stage": str(catalog.STAGE_CREATED),
            "status": str(catalog.STATUS_CREATED),
            "percentageComplete": "0",
            "createdDate": str(now),
        }
        base.update(fields or {})

        def rows() -> Iterator[Tuple[Any, ...]]:
            for job_id in ids:
                content = dict(base)
                content["name"] = f"{name_prefix} {job_id}"
                yield (
                    new_guid(),
                    "Job",
                    job_id,
                    dumps(content),
                    vv,
                    now,
                    store.repository,
                    0,
                    "",
                    gen,
                )

        session.conn.executemany(
            f"INSERT INTO elements ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
    return ids


def update_jobs(store: Store, ids: Sequence[int], changes: Mapping[str, str]) -> int:
    """Apply the same field changes to many jobs as local edits in one transaction.

    :returns: how many jobs changed (unknown or deleted ids are skipped).
    """
    changed = 0
    with store.atomic() as session:
        for job_id in ids:
            job = session.by_id("Job", job_id)
            if job is None:
                continue
            fields = dict(job.fields)
            fields.update(changes)
            if fields != dict(job.fields):
                session.edit("Job", job.guid, fields)
                changed += 1
    return changed
