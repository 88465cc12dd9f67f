"""One transaction's queries and changes: :class:`Session` (see
:meth:`~wmsync.repository.store.Store.atomic`). Imports are made by an
:class:`~wmsync.repository.importing.Importer` working in a session.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import itertools
import sqlite3
from contextlib import contextmanager
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Generator,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from wmsync.model import Element, bump_vv, new_guid

from . import catalog
from .records import Node, StoredElement, StoreError
from .tables import COLUMNS, ID_KINDS, KIND_ORDER, UPSERT, element_row, row_element

if TYPE_CHECKING:
    from .store import Store


_savepoints = itertools.count(1)


class Session:
    """Queries and changes inside one transaction (see :meth:`Store.atomic`)."""

    def __init__(self, store: Store, conn: sqlite3.Connection, *, writable: bool) -> None:
        self.store = store
        self.conn = conn
        self.writable = writable
        self._gen: Optional[int] = None

    @contextmanager
    def savepoint(self) -> Iterator[Session]:
        """A transaction nested in this one: undone alone on any exception (which then
        propagates), kept with the enclosing transaction otherwise. A generation first
        allocated inside it is forgotten with it."""
        name = f"nested_{next(_savepoints)}"
        gen = self._gen
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            self._gen = gen
            raise
        self.conn.execute(f"RELEASE {name}")

    @property
    def repository(self) -> str:
        return self.store.repository

    def meta(self, key: str) -> Optional[str]:
        """A value of the ``meta`` table (read in this transaction: a database put
        back in place from a backup is seen at once)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def incarnation(self) -> str:
        """The name local edits count under in version vectors: the repository's name,
        or ``Name~token`` once it was found restored or rebuilt (docs/design.md §4)."""
        return self.meta("incarnation") or self.repository

    # -- generations ------------------------------------------------------------------

    def generation(self) -> int:
        """The repository's current generation (this transaction's, once allocated)."""
        if self._gen is not None:
            return self._gen
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    @property
    def allocated_generation(self) -> bool:
        """This transaction has taken a generation (it wrote elements)."""
        return self._gen is not None

    def new_generation(self) -> int:
        """This transaction's generation, allocated on first use (only when writing)."""
        if not self.writable:
            raise StoreError("read-only session")
        if self._gen is None:
            gen = self.generation() + 1
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
            self._gen = gen
        return self._gen

    @property
    def changed(self) -> bool:
        """True once this transaction has written an element."""
        return self._gen is not None

    # -- reading ----------------------------------------------------------------------

    def get(self, guid: str) -> Optional[StoredElement]:
        """The current version of *guid* (tombstones included), or ``None``."""
        row = self.conn.execute(
            f"SELECT {COLUMNS} FROM elements WHERE guid = ?", (guid,)
        ).fetchone()
        return row_element(row) if row else None

    def get_live(self, guid: str, kind: Optional[str] = None) -> Optional[StoredElement]:
        """The current version of *guid* unless deleted (or of another kind)."""
        found = self.get(guid)
        if found is None or found.deleted or (kind is not None and found.kind != kind):
            return None
        return found

    def by_id(self, kind: str, local_id: int, *, live: bool = True) -> Optional[StoredElement]:
        """The element of *kind* with this local id (``None`` if absent or deleted)."""
        row = self.conn.execute(
            f"SELECT {COLUMNS} FROM elements WHERE kind = ? AND local_id = ?",
            (kind, local_id),
        ).fetchone()
        if row is None:
            return None
        found = row_element(row)
        return None if (live and found.deleted) else found

    def live(self, kind: str) -> List[StoredElement]:
        """Every live element of *kind*, by local id then GUID."""
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM elements WHERE kind = ? AND deleted = 0 "
            "ORDER BY local_id, guid",
            (kind,),
        ).fetchall()
        return [row_element(r) for r in rows]

    def live_ids(self, kind: str) -> List[int]:
        """The local ids of every live element of *kind*, ascending."""
        rows = self.conn.execute(
            "SELECT local_id FROM elements WHERE kind = ? AND deleted = 0 "
            "AND local_id IS NOT NULL ORDER BY local_id",
            (kind,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def of_job(self, kind: str, job_guid: str) -> List[StoredElement]:
        """Live holds or activity records of one job, in creation order."""
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM elements WHERE kind = ? "
            "AND json_extract(fields, '$.job') = ? AND deleted = 0 "
            "AND kind IN ('Hold', 'Activity')",  # the partial index elements_job_of
            (kind, job_guid),
        ).fetchall()
        found = [row_element(r) for r in rows]
        date_field = "holdDate" if kind == "Hold" else "date"

        def key(e: StoredElement) -> Tuple[int, int, str]:
            try:
                date = int(e.fields.get(date_field, "0"))
            except ValueError:
                date = 0
            return (date, e.local_id or 0, e.guid)

        return sorted(found, key=key)

    def elements_since(
        self,
        since_gen: int = 0,
        exclude_via: Optional[str] = None,
        *,
        until_gen: Optional[int] = None,
        after: Optional[Tuple[int, int, int, str]] = None,
        limit: Optional[int] = None,
    ) -> Generator[Element, None, None]:
        """Versions written after *since_gen* (tombstones too), in document order.

        A chunk of a split export: only up to *until_gen*, only after the document-order
        key *after* (:func:`order_key` of the previous chunk's last element), at most
        *limit* of them.
        """
        where, params = _window(since_gen, exclude_via)
        sql = f"SELECT {COLUMNS} FROM elements WHERE {where}"
        if until_gen is not None:
            sql += " AND gen <= ?"
            params.append(until_gen)
        if after is not None:
            sql += f" AND (deleted, {KIND_ORDER}, COALESCE(local_id, -1), guid) > (?, ?, ?, ?)"
            params.extend(after)
        sql += f" ORDER BY deleted, {KIND_ORDER}, local_id, guid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        cursor = self.conn.execute(sql, params)
        try:
            for row in cursor:
                yield row_element(row).element
        finally:
            cursor.close()

    def count_since(self, since_gen: int = 0, exclude_via: Optional[str] = None) -> int:
        """How many versions :meth:`elements_since` would give (tombstones too), counted
        in SQL."""
        where, params = _window(since_gen, exclude_via)
        return int(
            self.conn.execute(f"SELECT COUNT(*) FROM elements WHERE {where}", params).fetchone()[0]
        )

    def counts_by_via(self, since_gen: int = 0) -> Dict[str, int]:
        """How many versions written after *since_gen* came through each repository
        (``via``; ``""`` for the repository's own edits): what windows cut by each of
        them hold, from one pass."""
        rows = self.conn.execute(
            "SELECT via, COUNT(*) FROM elements WHERE gen > ? GROUP BY via", (since_gen,)
        )
        return {via: int(count) for via, count in rows}

    # -- local ids --------------------------------------------------------------------

    def id_taken(self, kind: str, local_id: int) -> bool:
        """True when an element of *kind* (tombstones too) has this local id."""
        row = self.conn.execute(
            "SELECT 1 FROM elements WHERE kind = ? AND local_id = ?", (kind, local_id)
        ).fetchone()
        return row is not None

    def _max_id(self, kind: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
        sql = "SELECT MAX(local_id) FROM elements WHERE kind = ? AND local_id IS NOT NULL"
        params: List[Any] = [kind]
        if low is not None and high is not None:
            sql += " AND local_id >= ? AND local_id < ?"
            params += [low, high]
        row = self.conn.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def next_id(self, kind: str) -> int:
        """The next local id for a new element of *kind* (ids are never reused).

        Jobs are numbered from this repository's own block (its own node row's
        ``jobIdStart``/``jobIdBlock``); without a block, or when it is used up, the next
        id after the largest one held.
        """
        if kind == "Job":
            own = self.node(self.repository)
            if own is not None and own.job_id_start is not None and own.job_id_block:
                start, end = own.job_id_start, own.job_id_start + own.job_id_block
                highest = self._max_id(kind, start, end)
                candidate = highest + 1 if highest else start
                # Past every id the cluster saw in the block (set after a restore).
                floor = int(self.meta("jobIdFloor") or 0)
                if start <= floor < end:
                    candidate = max(candidate, floor)
                if candidate < end:
                    return candidate
        return self._max_id(kind) + 1

    # -- writing ----------------------------------------------------------------------

    def write(self, element: Element, via: str) -> int:
        """Store exactly this version (content, vv, modified, origin, id) at this
        transaction's generation; returns the generation."""
        gen = self.new_generation()
        self.conn.execute(UPSERT, element_row(element, via, gen))
        return gen

    def edit(
        self,
        kind: str,
        guid: Optional[str],
        fields: Mapping[str, Optional[str]],
        *,
        local_id: Optional[int] = None,
        deleted: bool = False,
    ) -> Element:
        """Make a local edit: a new version with the own counter bumped.

        :param guid: the element to change, or ``None`` for a new one (a new GUID).
        :param fields: the complete new content; ``None`` values are left out (null).
        :param local_id: the id of a new element (allocated when ``None`` and the kind
            has ids); an existing element keeps its id.
        """
        current = self.get(guid) if guid else None
        if current is not None and current.kind != kind:
            raise StoreError(f"{guid} is a {current.kind}, not a {kind}")
        if current is not None:
            local_id = current.local_id
        elif local_id is None and kind in ID_KINDS:
            local_id = self.next_id(kind)
        vv = bump_vv(current.element.vv if current else {}, self.incarnation())
        clean = {} if deleted else {k: v for k, v in fields.items() if v is not None}
        element = Element(
            kind=kind,
            guid=guid or new_guid(),
            vv=vv,
            modified=self.store.now_ms(),
            origin=self.repository,
            fields=clean,
            deleted=deleted,
            local_id=local_id,
        )
        self.write(element, "")
        return element

    def delete(self, guid: str) -> Optional[Element]:
        """Replace a live element with a tombstone (a local edit); ``None`` if not live.

        A job's holds and activity records are deleted with it (:meth:`follow_job`)."""
        current = self.get_live(guid)
        if current is None:
            return None
        tombstone = self.edit(current.kind, guid, {}, deleted=True)
        if current.kind == "Job":
            self.follow_job(guid)
        return tombstone

    # -- holds and activity records follow their job (docs/design.md §4) ---------------

    def follow_job(self, job_guid: str) -> List[Element]:
        """Make a job's holds and activity records follow its fate, as local edits: when
        the job is deleted, each live one becomes a tombstone that keeps its content
        (deleted *with its job*); when the job is live, each one deleted with it comes
        back as it was. Tombstones without content (deleted on purpose) stay. Nothing is
        done for a job this repository does not hold.

        :returns: the versions written.
        """
        job = self.get(job_guid)
        if job is None or job.kind != "Job":
            return []
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM elements WHERE kind IN ('Hold', 'Activity') "
            "AND json_extract(fields, '$.job') = ? AND deleted != ? "
            "ORDER BY kind, local_id, guid",
            (job_guid, 1 if job.deleted else 0),
        ).fetchall()
        return [self.set_deleted_with_job(row_element(r), job.deleted) for r in rows]

    def set_deleted_with_job(self, current: StoredElement, deleted: bool) -> Element:
        """A local edit of a hold or activity record that only sets its ``deleted`` flag,
        keeping its content: a tombstone *with its job*, or its revival."""
        element = Element(
            kind=current.kind,
            guid=current.guid,
            vv=bump_vv(current.element.vv, self.incarnation()),
            modified=self.store.now_ms(),
            origin=self.repository,
            fields=dict(current.fields),
            deleted=deleted,
            local_id=current.local_id,
        )
        self.write(element, "")
        return element

    def log_activity(self, job_guid: str, activity: str, user: str, message: str) -> Element:
        """Log an activity record on a job (a new element of its own)."""
        type_id = catalog.ACTIVITY.get(activity, catalog.ACTIVITY["Comment"])
        return self.add_activity(job_guid, type_id, user, message)

    def add_activity(self, job_guid: str, type_id: int, user: str, message: str) -> Element:
        """Add an activity record of type *type_id* to a job."""
        return self.edit(
            "Activity",
            None,
            {
                "job": job_guid,
                "type": str(type_id),
                "user": user,
                "date": str(self.store.now_ms()),
                "message": message,
            },
        )

    # -- nodes ------------------------------------------------------------------------

    _NODECOLUMNS = (
        "id, name, description, serverURL, isParent, isConnected, lastSync, lastSyncGen, "
        "syncId, jobIdStart, jobIdBlock, peerGen, syncSeq, peerSeq, peerInstance, peerGenSeen, "
        "peerCounterSeen"
    )

    @staticmethod
    def _node(row: Sequence[Any]) -> Node:
        return Node(
            id=int(row[0]),
            name=row[1],
            description=row[2],
            server_url=row[3],
            is_parent=bool(row[4]),
            is_connected=bool(row[5]),
            last_sync=row[6],
            last_sync_gen=row[7],
            sync_id=row[8],
            job_id_start=row[9],
            job_id_block=row[10],
            peer_gen=row[11],
            sync_seq=row[12],
            peer_seq=row[13],
            peer_instance=row[14],
            peer_gen_seen=row[15],
            peer_counter_seen=row[16],
        )

    def node(self, name: str) -> Optional[Node]:
        row = self.conn.execute(
            f"SELECT {self._NODECOLUMNS} FROM nodes WHERE name = ?", (name,)
        ).fetchone()
        return self._node(row) if row else None

    def nodes(self) -> List[Node]:
        rows = self.conn.execute(f"SELECT {self._NODECOLUMNS} FROM nodes ORDER BY id")
        return [self._node(r) for r in rows.fetchall()]

    def confirm_peer_seq(self, name: str, seq: int) -> bool:
        """Record in node row *name* that the peer held sequence number *seq* when it
        sent what this transaction imports (``peerSeq``, only moving forward); False
        when there is no such row. Names match case aside, as repository names do.
        Consumes no generation."""
        cursor = self.conn.execute(
            "UPDATE nodes SET peerSeq = MAX(COALESCE(peerSeq, 0), ?) WHERE name = ? COLLATE NOCASE",
            (int(seq), name),
        )
        return cursor.rowcount > 0


def _window(since_gen: int, exclude_via: Optional[str]) -> Tuple[str, List[Any]]:
    """The WHERE clause (and its parameters) of an export window: versions written after
    *since_gen* that did not come through *exclude_via*."""
    if exclude_via:
        return "gen > ? AND via != ?", [since_gen, exclude_via]
    return "gen > ?", [since_gen]
