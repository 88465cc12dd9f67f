"""Bulk loading for benchmarks: many jobs created or changed in one transaction."""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from wmsync.model import new_guid

from . import catalog
from .records import StoreError
from .tables import _COLUMNS, _dumps

if TYPE_CHECKING:
    from .session import Session


class BulkLoading:
    """The benchmark loaders of :class:`~wmsync.repository.store.Store` (a base class of it)."""

    if TYPE_CHECKING:  # what the loaders use of Store, for the type checker
        repository: str

        def now_ms(self) -> int: ...
        def atomic(self) -> ContextManager[Session]: ...

    def bulk_insert_jobs(
        self,
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
        with self.atomic() as session:
            job_type = session.by_id("JobType", job_type_id)
            if job_type is None:
                raise StoreError(f"no job type {job_type_id}")
            first = session.next_id("Job")
            gen = session.new_generation()
            now = self.now_ms()
            vv = _dumps({self.repository: 1})
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
                    yield (new_guid(), "Job", job_id, _dumps(content), vv, now,
                           self.repository, 0, "", gen)

            session.conn.executemany(
                f"INSERT INTO elements ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows(),
            )
            return ids

    def bulk_update_jobs(self, ids: Sequence[int], changes: Mapping[str, str]) -> int:
        """Apply the same field changes to many jobs as local edits in one transaction.

        :returns: how many jobs changed (unknown or deleted ids are skipped).
        """
        changed = 0
        with self.atomic() as session:
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
