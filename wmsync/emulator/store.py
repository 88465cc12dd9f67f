"""The emulated repository: one SQLite file holding its elements, nodes and conflicts.

Every changing operation runs in one ``BEGIN IMMEDIATE`` transaction opened by
:meth:`Store.atomic`, which rolls back on any exception. A transaction allocates its
generation the first time it writes an element (:meth:`Session.new_generation`), so a
transaction that changes no element consumes no generation. Node rows and the conflict
log are bookkeeping, not elements: changing them never consumes a generation and never
appears in an export.

Connections are opened per operation and closed at its end (the threaded server runs
each request in a thread of its own), in WAL mode with a long busy timeout, so a user
edit waits for a running import instead of failing.

Table ``elements`` holds the current version of every element, tombstones included:
``guid``, ``kind``, ``local_id`` (jobs, job types, groups, holds; unique per kind; never
reused, so tombstones keep theirs), ``fields`` (JSON ``{name: text}``), ``vv`` (JSON),
``modified``, ``origin``, ``deleted``, ``via`` ("" for a local version) and ``gen``.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from wmsync import exchange
from wmsync.model import (
    KINDS,
    REFERENCES,
    Element,
    bump_vv,
    new_guid,
    vv_from_text,
    vv_to_text,
)

from . import catalog, merge

#: Kinds whose elements get a local numeric id.
ID_KINDS: Tuple[str, ...] = ("JobType", "Group", "Job", "Hold")

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS elements (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    local_id INTEGER,
    fields TEXT NOT NULL,
    vv TEXT NOT NULL,
    modified INTEGER NOT NULL,
    origin TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    via TEXT NOT NULL DEFAULT '',
    gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS elements_gen ON elements (gen);
CREATE UNIQUE INDEX IF NOT EXISTS elements_kind_id ON elements (kind, local_id)
    WHERE local_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS elements_job_of ON elements (kind, json_extract(fields, '$.job'))
    WHERE kind IN ('Hold', 'Activity');
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    serverURL TEXT NOT NULL DEFAULT '',
    isParent INTEGER NOT NULL DEFAULT 0,
    isConnected INTEGER NOT NULL DEFAULT 1,
    lastSync INTEGER,
    lastSyncGen INTEGER,
    syncId TEXT,
    jobIdStart INTEGER,
    jobIdBlock INTEGER
);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    guid TEXT NOT NULL,
    kind TEXT NOT NULL,
    time INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    reason TEXT NOT NULL,
    winner_vv TEXT NOT NULL,
    winner_modified INTEGER NOT NULL,
    winner_origin TEXT NOT NULL,
    loser_vv TEXT NOT NULL,
    loser_modified INTEGER NOT NULL,
    loser_origin TEXT NOT NULL,
    loser_deleted INTEGER NOT NULL,
    loser_content TEXT NOT NULL,
    loser_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflicts_gen ON conflicts (gen);
CREATE INDEX IF NOT EXISTS conflicts_guid ON conflicts (guid);
"""

_KIND_ORDER = "CASE kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS))
_KIND_ORDER += f" ELSE {len(KINDS)} END"

_COLUMNS = "guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen"
_UPSERT = (
    f"INSERT INTO elements ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, "
    "local_id = excluded.local_id, fields = excluded.fields, vv = excluded.vv, "
    "modified = excluded.modified, origin = excluded.origin, "
    "deleted = excluded.deleted, via = excluded.via, gen = excluded.gen"
)


class StoreError(Exception):
    """Base of the store's own errors (the app maps them to error envelopes)."""


class ImportRefused(StoreError, ValueError):
    """The elements cannot be applied (e.g. a GUID held by another kind): nothing changed."""


class WrongRepository(StoreError, ValueError):
    """The database file belongs to another repository."""


# One encoder for every row: json.dumps with these options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
#: Incoming versions an import looks up and writes at once (one SELECT ... IN, one
#: executemany), instead of one query and one INSERT per element.
IMPORT_BATCH = 500
#: Page cache of an import's connection (KiB; SQLite's default is 2,000): the random
#: GUIDs of a large import touch the whole primary-key index.
IMPORT_CACHE_KIB = 65536


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


_quote = json.encoder.encode_basestring  # the encoder's own string quoting (C)


def _fields_json(fields: Mapping[str, str]) -> str:
    """``_dumps(fields)`` for text fields, character for character, in about 70 % of
    its time (an import writes one per row)."""
    return "{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in sorted(fields.items())]) + "}"


# vv text -> (vv, its JSON): most versions of a document share a few vectors.
_vv_cache: Dict[str, Tuple[Dict[str, int], str]] = {}


#: What reference checks need of an element an import wrote: ``(kind, fields)``.
_Refs = Tuple[str, Mapping[str, str]]


@dataclass(frozen=True)
class StoredElement:
    """The current version of one element, with where it came from and when."""

    element: Element
    via: str
    gen: int

    @property
    def guid(self) -> str:
        return self.element.guid

    @property
    def kind(self) -> str:
        return self.element.kind

    @property
    def local_id(self) -> Optional[int]:
        return self.element.local_id

    @property
    def deleted(self) -> bool:
        return self.element.deleted

    @property
    def fields(self) -> Mapping[str, str]:
        return self.element.fields


@dataclass(frozen=True)
class Node:
    """One row of the replication node table."""

    id: int
    name: str
    description: str
    server_url: str
    is_parent: bool
    is_connected: bool
    last_sync: Optional[int]
    last_sync_gen: Optional[int]
    sync_id: Optional[str]
    job_id_start: Optional[int]
    job_id_block: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        """The node as ``replication/info`` lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "serverURL": self.server_url,
            "isParent": self.is_parent,
            "isConnected": self.is_connected,
            "lastSync": self.last_sync,
            "lastSyncGen": self.last_sync_gen,
            "syncId": self.sync_id,
            "jobIdStart": self.job_id_start,
            "jobIdBlock": self.job_id_block,
        }


@dataclass(frozen=True)
class ExportInfo:
    """A finished export file and the window it covers."""

    export_id: str
    path: Path
    generation: int
    since_gen: int
    export_time: int
    count: int


@dataclass
class ImportResult:
    """What an import did (the ``replication/import`` answer)."""

    import_time: int
    generation: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    conflicts: List[Dict[str, Any]] = field(default_factory=list)
    renumbered: List[Dict[str, Any]] = field(default_factory=list)
    renamed: List[Dict[str, Any]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "importTime": self.import_time,
            "generation": self.generation,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "conflicts": list(self.conflicts),
            "renumbered": list(self.renumbered),
            "renamed": list(self.renamed),
            "warnings": list(self.warnings),
        }


def _version(element: Element) -> Dict[str, Any]:
    return {"vv": dict(element.vv), "modified": element.modified, "origin": element.origin}


class Session:
    """Queries and changes inside one transaction (see :meth:`Store.atomic`)."""

    def __init__(self, store: Store, conn: sqlite3.Connection, *, writable: bool) -> None:
        self.store = store
        self.conn = conn
        self.writable = writable
        self._gen: Optional[int] = None
        # While an import applies a batch: the versions its GUIDs have here (``None``:
        # absent), the (kind, id) pairs taken, and the rows written but not yet flushed.
        self._batch_current: Optional[Dict[str, Optional[StoredElement]]] = None
        self._batch_ids: Optional[set[Tuple[str, int]]] = None
        self._pending: List[Tuple[Any, ...]] = []

    @property
    def repository(self) -> str:
        return self.store.repository

    # -- generations ------------------------------------------------------------------

    def generation(self) -> int:
        """The repository's current generation (this transaction's, once allocated)."""
        if self._gen is not None:
            return self._gen
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def new_generation(self) -> int:
        """This transaction's generation, allocated on first use (only when writing)."""
        if not self.writable:
            raise StoreError("read-only session")
        if self._gen is None:
            gen = self.generation() + 1
            self.conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),)
            )
            self._gen = gen
        return self._gen

    @property
    def changed(self) -> bool:
        """True once this transaction has written an element."""
        return self._gen is not None

    # -- reading ----------------------------------------------------------------------

    @staticmethod
    def _row(row: Sequence[Any]) -> StoredElement:
        guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen = row
        element = Element(
            kind=kind,
            guid=guid,
            vv=json.loads(vv),
            modified=int(modified),
            origin=origin,
            fields=json.loads(fields),
            deleted=bool(deleted),
            local_id=local_id,
        )
        return StoredElement(element, via, int(gen))

    def get(self, guid: str) -> Optional[StoredElement]:
        """The current version of *guid* (tombstones included), or ``None``."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM elements WHERE guid = ?", (guid,)
        ).fetchone()
        return self._row(row) if row else None

    def get_live(self, guid: str, kind: Optional[str] = None) -> Optional[StoredElement]:
        """The current version of *guid* unless deleted (or of another kind)."""
        found = self.get(guid)
        if found is None or found.deleted or (kind is not None and found.kind != kind):
            return None
        return found

    def by_id(self, kind: str, local_id: int, *, live: bool = True) -> Optional[StoredElement]:
        """The element of *kind* with this local id (``None`` if absent or deleted)."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM elements WHERE kind = ? AND local_id = ?",
            (kind, local_id),
        ).fetchone()
        if row is None:
            return None
        found = self._row(row)
        return None if (live and found.deleted) else found

    def live(self, kind: str) -> List[StoredElement]:
        """Every live element of *kind*, by local id then GUID."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM elements WHERE kind = ? AND deleted = 0 "
            "ORDER BY local_id, guid",
            (kind,),
        ).fetchall()
        return [self._row(r) for r in rows]

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
            f"SELECT {_COLUMNS} FROM elements WHERE kind = ? "
            "AND json_extract(fields, '$.job') = ? AND deleted = 0 "
            "AND kind IN ('Hold', 'Activity')",  # the partial index elements_job_of
            (kind, job_guid),
        ).fetchall()
        found = [self._row(r) for r in rows]
        date_field = "holdDate" if kind == "Hold" else "date"

        def key(e: StoredElement) -> Tuple[int, int, str]:
            try:
                date = int(e.fields.get(date_field, "0"))
            except ValueError:
                date = 0
            return (date, e.local_id or 0, e.guid)

        return sorted(found, key=key)

    def elements_since(
        self, since_gen: int = 0, exclude_via: Optional[str] = None
    ) -> Iterator[Element]:
        """Versions written after *since_gen* (tombstones too), in document order."""
        sql = f"SELECT {_COLUMNS} FROM elements WHERE gen > ?"
        params: List[Any] = [since_gen]
        if exclude_via:
            sql += " AND via != ?"
            params.append(exclude_via)
        sql += f" ORDER BY deleted, {_KIND_ORDER}, local_id, guid"
        cursor = self.conn.execute(sql, params)
        try:
            for row in cursor:
                yield self._row(row).element
        finally:
            cursor.close()

    # -- local ids --------------------------------------------------------------------

    def id_taken(self, kind: str, local_id: int) -> bool:
        if self._batch_ids is not None:
            return (kind, local_id) in self._batch_ids
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
        self._flush()  # rows an import has not written yet hold ids too
        if kind == "Job":
            own = self.node(self.repository)
            if own is not None and own.job_id_start is not None and own.job_id_block:
                start, end = own.job_id_start, own.job_id_start + own.job_id_block
                highest = self._max_id(kind, start, end)
                candidate = highest + 1 if highest else start
                if candidate < end:
                    return candidate
        return self._max_id(kind) + 1

    # -- writing ----------------------------------------------------------------------

    def write(self, element: Element, via: str) -> int:
        """Store exactly this version (content, vv, modified, origin, id) at this
        transaction's generation; returns the generation."""
        gen = self.new_generation()
        fields = {} if element.deleted else dict(element.fields)
        row = (
            element.guid,
            element.kind,
            element.local_id,
            _dumps(fields),
            _dumps(dict(element.vv)),
            element.modified,
            element.origin,
            1 if element.deleted else 0,
            via,
            gen,
        )
        if self._batch_current is not None:  # an import's batch: written at its end
            self._batch_current[element.guid] = StoredElement(element, via, gen)
            if self._batch_ids is not None and element.local_id is not None:
                self._batch_ids.add((element.kind, element.local_id))
            self._pending.append(row)
        else:
            self.conn.execute(_UPSERT, row)
        return gen

    def _flush(self) -> None:
        """Write the rows an import's batch has kept back."""
        if self._pending:
            rows, self._pending = self._pending, []
            self.conn.executemany(_UPSERT, rows)

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
        vv = bump_vv(current.element.vv if current else {}, self.repository)
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
        """Replace a live element with a tombstone (a local edit); ``None`` if not live."""
        current = self.get_live(guid)
        if current is None:
            return None
        return self.edit(current.kind, guid, {}, deleted=True)

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

    # -- import -----------------------------------------------------------------------

    def apply(self, elements: Iterable[Element], sender: str) -> ImportResult:
        """Merge incoming versions (one document from *sender*) into this repository.

        :raises ImportRefused: an element cannot be applied; the caller's transaction
            must then roll back (``Store.atomic`` does).
        """
        result = ImportResult(import_time=self.store.now_ms())
        touched_job_types: List[str] = []
        changed_refs: Dict[str, _Refs] = {}
        batch: List[Element] = []
        for incoming in elements:
            batch.append(incoming)
            if len(batch) >= IMPORT_BATCH:
                self._apply_batch(batch, sender, result, touched_job_types, changed_refs)
                batch = []
        self._apply_batch(batch, sender, result, touched_job_types, changed_refs)
        return self._finish_import(result, touched_job_types, changed_refs)

    def _finish_import(
        self, result: ImportResult, touched_job_types: List[str], changed_refs: Dict[str, _Refs]
    ) -> ImportResult:
        """After the last element: the parent's renames, reference warnings, generation."""
        if touched_job_types and self._is_parent():
            self._rename_duplicates(touched_job_types, result)
        known: Dict[str, Optional[str]] = {}
        for guid, (kind, fields) in changed_refs.items():
            self._check_references(guid, kind, fields, result, known)
        result.generation = self.generation()
        return result

    def _apply_batch(
        self,
        batch: List[Element],
        sender: str,
        result: ImportResult,
        touched_job_types: List[str],
        changed_refs: Dict[str, _Refs],
    ) -> None:
        """Apply versions in order, reading what they need in two queries and writing
        them in one ``executemany``; the same answer as applying them one by one."""
        if not batch:
            return
        guids = list({e.guid for e in batch})
        marks = ", ".join("?" * len(guids))
        current: Dict[str, Optional[StoredElement]] = dict.fromkeys(guids)
        for row in self.conn.execute(
            f"SELECT {_COLUMNS} FROM elements WHERE guid IN ({marks})", guids
        ):
            current[row[0]] = self._row(row)
        wanted: Dict[str, List[int]] = {}
        for e in batch:  # ids that new elements bring: are they taken here?
            if e.local_id is not None and current.get(e.guid) is None:
                wanted.setdefault(e.kind, []).append(e.local_id)
        taken: set[Tuple[str, int]] = set()
        for kind, ids in wanted.items():
            marks = ", ".join("?" * len(ids))
            taken.update(
                (kind, int(row[0])) for row in self.conn.execute(
                    f"SELECT local_id FROM elements WHERE kind = ? AND local_id IN ({marks})",
                    [kind, *ids],
                )
            )
        self._batch_current, self._batch_ids = current, taken
        try:
            for incoming in batch:
                self._apply_one(incoming, sender, result, touched_job_types, changed_refs)
            self._flush()
        finally:
            self._batch_current = self._batch_ids = None
            self._pending = []

    def apply_records(
        self, batches: Iterable[List[exchange.Record]], sender: str
    ) -> ImportResult:
        """:meth:`apply` for what :func:`exchange.read_records` reads: the same result,
        with the common cases (a new element with a free id, the same version again)
        going straight from the record to the row; every other case builds the
        :class:`Element` and goes through :meth:`_apply_one`.

        :raises ImportRefused: as :meth:`apply` (the caller rolls back).
        :raises ValueError: a bad vv (the reference reader names its line).
        """
        result = ImportResult(import_time=self.store.now_ms())
        touched_job_types: List[str] = []
        changed_refs: Dict[str, _Refs] = {}
        waiting: List[exchange.Record] = []
        for records in batches:
            waiting.extend(records)
            while len(waiting) >= IMPORT_BATCH:
                self._apply_records(
                    waiting[:IMPORT_BATCH], sender, result, touched_job_types, changed_refs
                )
                del waiting[:IMPORT_BATCH]
        self._apply_records(waiting, sender, result, touched_job_types, changed_refs)
        return self._finish_import(result, touched_job_types, changed_refs)

    def _apply_records(
        self,
        records: List[exchange.Record],
        sender: str,
        result: ImportResult,
        touched_job_types: List[str],
        changed_refs: Dict[str, _Refs],
    ) -> None:
        if not records:
            return
        guids = list({r[1] for r in records})
        marks = ", ".join("?" * len(guids))
        rows: Dict[str, Tuple[Any, ...]] = {}  # as stored, or as this batch wrote it
        for row in self.conn.execute(
            f"SELECT {_COLUMNS} FROM elements WHERE guid IN ({marks})", guids
        ):
            rows[row[0]] = tuple(row)
        wanted: Dict[str, List[int]] = {}
        for r in records:
            if r[2] is not None and r[1] not in rows:
                wanted.setdefault(r[0], []).append(r[2])
        taken: set[Tuple[str, int]] = set()
        for kind, ids in wanted.items():
            marks = ", ".join("?" * len(ids))
            taken.update(
                (kind, int(row[0])) for row in self.conn.execute(
                    f"SELECT local_id FROM elements WHERE kind = ? AND local_id IN ({marks})",
                    [kind, *ids],
                )
            )
        current: Dict[str, Optional[StoredElement]] = {}
        self._batch_current, self._batch_ids = current, taken
        slow: set[str] = set()  # GUIDs whose state is in ``current`` from now on
        vvs = _vv_cache
        try:
            for kind, guid, local_id, vv_text, modified, origin, deleted, fields in records:
                cached = vvs.get(vv_text)
                if cached is None:
                    vv = vv_from_text(vv_text)
                    if len(vvs) > 10_000:
                        vvs.clear()
                    cached = vvs[vv_text] = (vv, _dumps(vv))
                if guid not in slow:
                    row = rows.get(guid)
                    fields_json = _fields_json(fields)
                    if row is None:
                        if kind not in ID_KINDS:
                            local_id = None
                        if local_id is None or (kind, local_id) not in taken:
                            if local_id is None and kind in ID_KINDS:
                                pass  # needs an id from the allocator: the long way
                            else:  # added as it is (merge.decide: ADD)
                                gen = self._gen if self._gen is not None else self.new_generation()
                                row = (guid, kind, local_id, fields_json, cached[1], modified,
                                       origin, 1 if deleted else 0, sender, gen)
                                self._pending.append(row)
                                rows[guid] = row
                                if local_id is not None:
                                    taken.add((kind, local_id))
                                if deleted:
                                    result.deleted += 1
                                    continue
                                result.added += 1
                                if kind == "JobType":
                                    touched_job_types.append(guid)
                                if kind in REFERENCES:
                                    changed_refs[guid] = (kind, fields)
                                continue
                    elif (
                        row[4] == cached[1]
                        and row[3] == fields_json
                        and row[1] == kind
                        and row[7] == (1 if deleted else 0)
                    ):
                        result.unchanged += 1  # the same version (merge.decide: UNCHANGED)
                        continue
                    current[guid] = None if row is None else self._row(row)
                    slow.add(guid)
                incoming = Element(
                    kind=kind,
                    guid=guid,
                    vv=dict(cached[0]),
                    modified=modified,
                    origin=origin,
                    fields=fields,
                    deleted=deleted,
                    local_id=local_id,
                )
                self._apply_one(incoming, sender, result, touched_job_types, changed_refs)
            self._flush()
        finally:
            self._batch_current = self._batch_ids = None
            self._pending = []

    def _apply_one(
        self,
        incoming: Element,
        sender: str,
        result: ImportResult,
        touched_job_types: List[str],
        changed_refs: Dict[str, _Refs],
    ) -> None:
        batch = self._batch_current
        current = batch[incoming.guid] if batch is not None else self.get(incoming.guid)
        if current is not None and current.kind != incoming.kind:
            raise ImportRefused(
                f"element {incoming.guid} is a {incoming.kind} in the document "
                f"but a {current.kind} here"
            )
        decision = merge.decide(current.element if current else None, incoming)
        if decision.action == merge.CONFLICT:
            assert decision.loser is not None and decision.winner is not None
            self._log_conflict(decision, result)
        if decision.result is None:
            result.unchanged += 1
            return
        version = decision.result
        if current is not None:
            local_id = current.local_id
            if local_id is None and version.kind in ID_KINDS:
                local_id = self.next_id(version.kind)
        elif version.kind not in ID_KINDS:
            local_id = None
        elif version.local_id is not None and not self.id_taken(version.kind, version.local_id):
            local_id = version.local_id
        else:
            local_id = self.next_id(version.kind)
            if version.local_id is not None:
                result.renumbered.append(
                    {
                        "guid": version.guid,
                        "kind": version.kind,
                        "from": version.local_id,
                        "to": local_id,
                    }
                )
        if version.local_id != local_id:
            version = replace(version, local_id=local_id)
        via = "" if decision.local else sender
        if (
            current is not None
            and current.via == via
            and dict(current.element.vv) == dict(version.vv)
            and current.element.modified == version.modified
            and current.element.origin == version.origin
            and current.element.same_content(version)
        ):
            result.unchanged += 1  # e.g. a conflict the local version won again
            return
        self.write(version, via)
        if version.deleted:
            result.deleted += 1
        elif current is None:
            result.added += 1
        else:
            result.updated += 1
        if not version.deleted:
            if version.kind == "JobType":
                touched_job_types.append(version.guid)
            if version.kind in REFERENCES:
                changed_refs[version.guid] = (version.kind, version.fields)

    def _log_conflict(self, decision: merge.Decision, result: ImportResult) -> None:
        winner, loser = decision.winner, decision.loser
        assert winner is not None and loser is not None
        entry = {
            "guid": loser.guid,
            "kind": loser.kind,
            "winner": _version(winner),
            "loser": _version(loser),
            "reason": decision.reason,
        }
        result.conflicts.append(entry)
        loser_vv, loser_hash = _dumps(dict(loser.vv)), loser.content_hash()
        seen = self.conn.execute(
            "SELECT 1 FROM conflicts WHERE guid = ? AND loser_vv = ? AND loser_hash = ? "
            "AND winner_vv = ? AND winner_modified = ? AND winner_origin = ?",
            (
                loser.guid, loser_vv, loser_hash, _dumps(dict(winner.vv)), winner.modified,
                winner.origin,
            ),
        ).fetchone()
        if seen:
            return
        # The conflict belongs to the generation that stores its resolution; when the
        # local version wins and nothing is written, to the current one.
        gen = self.new_generation() if decision.result is not None else self.generation()
        self.conn.execute(
            "INSERT INTO conflicts (guid, kind, time, gen, reason, winner_vv, "
            "winner_modified, winner_origin, loser_vv, loser_modified, loser_origin, "
            "loser_deleted, loser_content, loser_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                loser.guid, loser.kind, self.store.now_ms(), gen, decision.reason,
                _dumps(dict(winner.vv)), winner.modified, winner.origin,
                loser_vv, loser.modified, loser.origin, 1 if loser.deleted else 0,
                _dumps(dict(loser.fields)), loser_hash,
            ),
        )

    def _is_parent(self) -> bool:
        own = self.node(self.repository)
        return bool(own and own.is_parent)

    def _rename_duplicates(self, guids: Sequence[str], result: ImportResult) -> None:
        for guid in dict.fromkeys(guids):
            current = self.get_live(guid, "JobType")
            if current is None:
                continue
            live = self.live("JobType")
            name = current.fields.get("name", "")
            same = [e.element for e in live if e.fields.get("name", "") == name]
            if len(same) < 2:
                continue
            names = [e.fields.get("name", "") for e in live]
            for element, new_name in merge.plan_renames(same, names):
                fields = dict(element.fields)
                fields["name"] = new_name
                self.edit("JobType", element.guid, fields)
                result.renamed.append({"guid": element.guid, "from": name, "to": new_name})

    def _live_kind(self, guid: str, known: Dict[str, Optional[str]]) -> Optional[str]:
        """The kind of a live element (``None`` if absent or deleted), cached in *known*."""
        if guid not in known:
            row = self.conn.execute(
                "SELECT kind FROM elements WHERE guid = ? AND deleted = 0", (guid,)
            ).fetchone()
            known[guid] = row[0] if row else None
        return known[guid]

    def _check_references(
        self,
        guid: str,
        kind: str,
        fields: Mapping[str, str],
        result: ImportResult,
        known: Dict[str, Optional[str]],
    ) -> None:
        for field_name, target_kind in REFERENCES.get(kind, {}).items():
            target = fields.get(field_name)
            if target and self._live_kind(target, known) != target_kind:
                result.warnings.append(
                    f"{kind} {guid} references {target_kind} {target}, "
                    "which this repository does not hold"
                )

    # -- nodes ------------------------------------------------------------------------

    _NODE_COLUMNS = (
        "id, name, description, serverURL, isParent, isConnected, lastSync, lastSyncGen, "
        "syncId, jobIdStart, jobIdBlock"
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
        )

    def node(self, name: str) -> Optional[Node]:
        row = self.conn.execute(
            f"SELECT {self._NODE_COLUMNS} FROM nodes WHERE name = ?", (name,)
        ).fetchone()
        return self._node(row) if row else None

    def nodes(self) -> List[Node]:
        rows = self.conn.execute(f"SELECT {self._NODE_COLUMNS} FROM nodes ORDER BY id")
        return [self._node(r) for r in rows.fetchall()]


def _as_path(path: Union[str, os.PathLike[str]]) -> Path:
    return Path(os.fspath(path))


class Store:
    """One emulated repository in one SQLite file.

    :param path: the database file (created with the default configuration if new).
    :param repository: the repository's name; a file created for another name is refused.
    :param clock_offset_ms: added to the system clock for ``modified`` times (clock-skew
        tests).
    :param clock: a function returning epoch ms, instead of the system clock (tests).
    :param busy_timeout: seconds a writer waits for another one.
    :raises WrongRepository: the file belongs to another repository.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        repository: str,
        *,
        clock_offset_ms: int = 0,
        clock: Optional[Callable[[], int]] = None,
        busy_timeout: float = 60.0,
    ) -> None:
        if not repository or not repository.strip():
            raise ValueError("a repository needs a name")
        self.path = _as_path(path)
        self.repository = repository
        self.clock_offset_ms = clock_offset_ms
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._initialize()

    def now_ms(self) -> int:
        """This repository's clock: epoch ms UTC plus the configured offset."""
        base = self._clock() if self._clock is not None else int(time.time() * 1000)
        return base + self.clock_offset_ms

    # -- connections and transactions -------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def atomic(self) -> Iterator[Session]:
        """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on any
        exception. Its generation is allocated by the first element it writes."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            session = Session(self, conn, writable=True)
            try:
                yield session
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One read transaction: every query in it sees the same snapshot."""
        with self._connect() as conn:
            conn.execute("BEGIN")
            try:
                yield Session(self, conn, writable=False)
            finally:
                conn.execute("ROLLBACK")

    def _initialize(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                # Files made before elements_job_of indexed every row's JSON (jobs too).
                conn.execute("DROP INDEX IF EXISTS elements_job")
                row = conn.execute("SELECT value FROM meta WHERE key = 'repository'").fetchone()
                if row is None:
                    self._create_defaults(conn)
                elif row[0] != self.repository:
                    raise WrongRepository(
                        f"{self.path} holds repository {row[0]!r}, not {self.repository!r}"
                    )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _create_defaults(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("repository", self.repository),
                ("generation", "0"),
                ("schema", SCHEMA_VERSION),
                ("created", str(self.now_ms())),
            ],
        )
        session = Session(self, conn, writable=True)
        for element in catalog.default_elements():
            session.write(element, "")

    # -- reading ----------------------------------------------------------------------

    def generation(self) -> int:
        """The current generation."""
        with self.reading() as session:
            return session.generation()

    def get(self, guid: str) -> Optional[StoredElement]:
        """The current version of *guid* (tombstones included)."""
        with self.reading() as session:
            return session.get(guid)

    def by_id(self, kind: str, local_id: int) -> Optional[StoredElement]:
        """The live element of *kind* with this local id."""
        with self.reading() as session:
            return session.by_id(kind, local_id)

    def elements(self, *, include_deleted: bool = True) -> List[StoredElement]:
        """Every element (for tests and convergence checks; loads all in memory)."""
        with self.reading() as session:
            rows = session.conn.execute(
                f"SELECT {_COLUMNS} FROM elements"
                + ("" if include_deleted else " WHERE deleted = 0")
                + f" ORDER BY {_KIND_ORDER}, local_id, guid"
            ).fetchall()
            return [Session._row(r) for r in rows]

    def fingerprint(self) -> Dict[str, Tuple[str, str, str]]:
        """``{guid: (kind, content hash, vv text)}`` of every element, tombstones too:
        two repositories that converged have equal fingerprints."""
        return {
            e.guid: (e.kind, e.element.content_hash(), vv_to_text(e.element.vv))
            for e in self.elements()
        }

    # -- nodes ------------------------------------------------------------------------

    def nodes(self) -> List[Node]:
        with self.reading() as session:
            return session.nodes()

    def node(self, name: str) -> Optional[Node]:
        with self.reading() as session:
            return session.node(name)

    def update_node(
        self,
        name: str,
        *,
        server_url: Optional[str] = None,
        description: Optional[str] = None,
        is_parent: Optional[bool] = None,
        is_connected: Optional[bool] = None,
        last_sync_gen: Optional[int] = None,
        sync_id: Optional[str] = None,
        stamp_last_sync: bool = False,
        job_id_start: Optional[int] = None,
        job_id_block: Optional[int] = None,
    ) -> Node:
        """Register or update a node row (upsert); ``lastSyncGen`` only moves forward.

        Consumes no generation: node rows are bookkeeping, not elements.
        """
        if not name:
            raise ValueError("a node needs a name")
        with self.atomic() as session:
            conn = session.conn
            current = session.node(name)
            if current is None:
                row = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM nodes").fetchone()
                conn.execute("INSERT INTO nodes (name, id) VALUES (?, ?)", (name, row[0]))
                current = session.node(name)
                assert current is not None
            gen = current.last_sync_gen
            if last_sync_gen is not None:
                gen = last_sync_gen if gen is None else max(gen, last_sync_gen)
            values = {
                "description": current.description if description is None else description,
                "serverURL": current.server_url if server_url is None else server_url,
                "isParent": int(current.is_parent if is_parent is None else is_parent),
                "isConnected": int(
                    current.is_connected if is_connected is None else is_connected
                ),
                "lastSync": self.now_ms() if stamp_last_sync else current.last_sync,
                "lastSyncGen": gen,
                "syncId": current.sync_id if sync_id is None else sync_id,
                "jobIdStart": current.job_id_start if job_id_start is None else job_id_start,
                "jobIdBlock": current.job_id_block if job_id_block is None else job_id_block,
            }
            assignments = ", ".join(f"{k} = ?" for k in values)
            conn.execute(
                f"UPDATE nodes SET {assignments} WHERE name = ?", (*values.values(), name)
            )
            updated = session.node(name)
            assert updated is not None
            return updated

    def reset_node(self, name: str) -> bool:
        """Forget a node row's watermark and ``syncId``; False if there is no such row."""
        with self.atomic() as session:
            cursor = session.conn.execute(
                "UPDATE nodes SET lastSyncGen = NULL, syncId = NULL WHERE name = ?", (name,)
            )
            return cursor.rowcount > 0

    # -- conflicts --------------------------------------------------------------------

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]:
        """The conflict log (losers with their content), oldest first."""
        with self.reading() as session:
            rows = session.conn.execute(
                "SELECT guid, kind, time, gen, reason, winner_vv, winner_modified, "
                "winner_origin, loser_vv, loser_modified, loser_origin, loser_deleted, "
                "loser_content FROM conflicts WHERE gen > ? ORDER BY id",
                (since_gen or 0,),
            ).fetchall()
        return [
            {
                "guid": r[0],
                "kind": r[1],
                "time": r[2],
                "generation": r[3],
                "reason": r[4],
                "winner": {"vv": json.loads(r[5]), "modified": r[6], "origin": r[7]},
                "loser": {
                    "vv": json.loads(r[8]),
                    "modified": r[9],
                    "origin": r[10],
                    "deleted": bool(r[11]),
                    "content": json.loads(r[12]),
                },
            }
            for r in rows
        ]

    # -- import and export ------------------------------------------------------------

    def apply_elements(self, elements: Iterable[Element], *, sender: str) -> ImportResult:
        """Merge incoming versions in one transaction (all or nothing).

        :param sender: the sending repository (stored as ``via`` of what is imported).
        :raises ImportRefused: nothing was changed.
        """
        with self.atomic() as session:
            return session.apply(elements, sender)

    def import_file(
        self, path: Union[str, os.PathLike[str]], *, max_bytes: Optional[int] = None
    ) -> ImportResult:
        """Validate a whole exchange document, then apply it in one transaction.

        :raises wmsync.errors.ExchangeFormatError: the document is invalid; nothing
            changed.
        :raises ImportRefused: the document cannot be applied; nothing changed.
        """
        limit = exchange.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        source = os.fspath(path)
        # One pass: every element is validated as it is read, and an invalid one raises
        # inside the transaction, which then rolls back: nothing changed, as before.
        with self.atomic() as session:
            conn = session.conn
            # Room for the GUID index of a large import (pages are taken as needed;
            # this connection ends with the request).
            conn.execute(f"PRAGMA cache_size = {-IMPORT_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # The quick reading first (exchange.read_records). Whatever it cannot vouch
            # for, and any error at all, undoes its writes and reads the document again
            # with the reference reader, which accepts it or raises the reference error
            # (with line and element); a valid document never takes this second pass.
            conn.execute("SAVEPOINT quick_import")
            try:
                with exchange.read_records(source, max_bytes=limit) as records:
                    result = session.apply_records(records.batches(), records.header.repository)
            except Exception:  # whatever it is, the reference pass decides
                conn.execute("ROLLBACK TO quick_import")
                conn.execute("RELEASE quick_import")
            else:
                conn.execute("RELEASE quick_import")
                return result
            session = Session(self, conn, writable=True)  # forget the undone generation
            with exchange.read_document(source, max_bytes=limit) as reader:
                return session.apply(reader, reader.header.repository)

    def export(
        self,
        directory: Union[str, os.PathLike[str]],
        since_gen: int = 0,
        exclude_via: Optional[str] = None,
    ) -> ExportInfo:
        """Write the versions after *since_gen* to a new exchange document.

        Rows and the generation they cover are read in one snapshot.
        """
        folder = _as_path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        export_id = secrets.token_hex(16)
        path = folder / f"{export_id}.jxl"
        partial = folder / f"{export_id}.part"
        export_time = self.now_ms()
        try:
            with self.reading() as session:
                generation = session.generation()
                header = exchange.ExchangeHeader(
                    repository=self.repository,
                    generation=generation,
                    since_gen=since_gen,
                    export_time=export_time,
                )
                with open(partial, "wb") as target:
                    count = exchange.write_document(
                        target, header, session.elements_since(since_gen, exclude_via)
                    )
            os.replace(partial, path)
        finally:
            if partial.exists():
                partial.unlink()
        return ExportInfo(export_id, path, generation, since_gen, export_time, count)

    # -- bulk loading (benchmarks) ----------------------------------------------------

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
