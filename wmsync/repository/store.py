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

Transactions nest: :meth:`Store.atomic` called while the same thread has one open is a
savepoint in it (:meth:`Session.savepoint`), undone alone on an exception.

The store is split by concern: :mod:`~wmsync.repository.tables` (tables and row
encoding), :mod:`~wmsync.repository.records` (errors and row classes),
:mod:`~wmsync.repository.session` (:class:`Session`), :mod:`~wmsync.repository.importing`
(:class:`~wmsync.repository.importing.Importer`), :mod:`~wmsync.repository.quick` (the
quick reading of large imports) and :mod:`~wmsync.repository.bulk` (benchmark loaders).
Their public names used by the emulator are importable from here too.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
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
from wmsync.model import KINDS, Element, vv_to_text

from . import bulk, catalog
from .importing import IMPORT_BATCH, Importer, import_document
from .records import (
    ExportFile,
    ImportRefused,
    ImportResult,
    Node,
    StoredElement,
    StoreError,
    UnknownPeer,
    WrongRepository,
)
from .session import Session
from .tables import (
    COLUMNS,
    CONFLICT_COLUMNS_ADDED,
    ID_KINDS,
    KIND_ORDER,
    NODE_COLUMNS_ADDED,
    SCHEMA,
    SCHEMA_VERSION,
    row_element,
)

__all__ = [
    "ID_KINDS",
    "IMPORT_BATCH",
    "IMPORT_CACHE_KIB",
    "SCHEMA_VERSION",
    "ExportFile",
    "ImportRefused",
    "ImportResult",
    "Node",
    "Session",
    "Store",
    "StoreError",
    "StoredElement",
    "UnknownPeer",
    "WrongRepository",
]

#: Page cache of an import's connection (KiB; SQLite's default is 2,000): the random
#: GUIDs of a large import touch the whole primary-key index.
IMPORT_CACHE_KIB = 65536


def _forward(current: Optional[int], new: Optional[int]) -> Optional[int]:
    """A mark that only moves forward."""
    if new is None:
        return current
    return new if current is None else max(current, new)


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
        self._open = threading.local()  # this thread's open atomic session, if any
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
        exception. Its generation is allocated by the first element it writes.

        Inside an open one (same thread), a savepoint of it instead: the same session,
        undone alone on an exception, committed with the enclosing transaction.
        """
        outer: Optional[Session] = getattr(self._open, "session", None)
        if outer is not None:
            with outer.savepoint() as session:
                yield session
            return
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            session = Session(self, conn, writable=True)
            self._open.session = session
            try:
                yield session
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._open.session = None
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
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conflict_columns = {r[1] for r in conn.execute("PRAGMA table_info(conflicts)")}
                for column, declaration in CONFLICT_COLUMNS_ADDED:
                    if column not in conflict_columns:  # a file made before they existed
                        conn.execute(f"ALTER TABLE conflicts ADD COLUMN {column} {declaration}")
                node_columns = {r[1] for r in conn.execute("PRAGMA table_info(nodes)")}
                for column, declaration in NODE_COLUMNS_ADDED:
                    if column not in node_columns:  # a file made before files or restores
                        conn.execute(f"ALTER TABLE nodes ADD COLUMN {column} {declaration}")
                # Files made before elements_job_of indexed every row's JSON (jobs too).
                conn.execute("DROP INDEX IF EXISTS elements_job")
                row = conn.execute("SELECT value FROM meta WHERE key = 'repository'").fetchone()
                if row is None:
                    self._create_defaults(conn)
                elif row[0] != self.repository:
                    raise WrongRepository(
                        f"{self.path} holds repository {row[0]!r}, not {self.repository!r}"
                    )
                else:  # a file made before instance ids gets one now
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)",
                        (secrets.token_hex(16),),
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
                # Created with the database: a rebuilt repository has a new one.
                ("instance", secrets.token_hex(16)),
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
                f"SELECT {COLUMNS} FROM elements"
                + ("" if include_deleted else " WHERE deleted = 0")
                + f" ORDER BY {KIND_ORDER}, local_id, guid"
            ).fetchall()
            return [row_element(r) for r in rows]

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
        peer_gen: Optional[int] = None,
        sync_seq: Optional[int] = None,
        peer_seq: Optional[int] = None,
        peer_instance: Optional[str] = None,
        peer_gen_seen: Optional[int] = None,
        peer_counter_seen: Optional[str] = None,
    ) -> Node:
        """Register or update a node row (upsert); ``lastSyncGen``, ``peerGen``, ``syncSeq``
        and ``peerSeq`` only move forward.

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
            gen = _forward(current.last_sync_gen, last_sync_gen)
            peer = _forward(current.peer_gen, peer_gen)
            values = {
                "description": current.description if description is None else description,
                "serverURL": current.server_url if server_url is None else server_url,
                "isParent": int(current.is_parent if is_parent is None else is_parent),
                "isConnected": int(current.is_connected if is_connected is None else is_connected),
                "lastSync": self.now_ms() if stamp_last_sync else current.last_sync,
                "lastSyncGen": gen,
                "syncId": current.sync_id if sync_id is None else sync_id,
                "jobIdStart": current.job_id_start if job_id_start is None else job_id_start,
                "jobIdBlock": current.job_id_block if job_id_block is None else job_id_block,
                "peerGen": peer,
                "syncSeq": _forward(current.sync_seq, sync_seq),
                "peerSeq": _forward(current.peer_seq, peer_seq),
                "peerInstance": current.peer_instance if peer_instance is None else peer_instance,
                # Set, not forward only: a run that handled a restore records the
                # peer's generation anew.
                "peerGenSeen": current.peer_gen_seen if peer_gen_seen is None else peer_gen_seen,
                "peerCounterSeen": (
                    current.peer_counter_seen if peer_counter_seen is None else peer_counter_seen
                ),
            }
            assignments = ", ".join(f"{k} = ?" for k in values)
            conn.execute(f"UPDATE nodes SET {assignments} WHERE name = ?", (*values.values(), name))
            remember_own_counter(session)  # every run writes node rows: a fresh mark
            updated = session.node(name)
            assert updated is not None
            return updated

    def mark_sync_seqs(self, marks: Mapping[str, int]) -> List[str]:
        """The sending side's sequence bump of several node rows in one transaction:
        each row named in *marks* takes its number as ``syncSeq`` (only moving forward),
        as :meth:`update_node` with ``sync_seq`` would. Rows that do not exist are not
        made (the caller bumps those the long way).

        :returns: the names of the rows marked.
        """
        marked: List[str] = []
        with self.atomic() as session:
            for name, seq in marks.items():
                cursor = session.conn.execute(
                    "UPDATE nodes SET syncSeq = MAX(COALESCE(syncSeq, 0), ?) WHERE name = ?",
                    (int(seq), name),
                )
                if cursor.rowcount > 0:
                    marked.append(name)
        return marked

    def reset_node(self, name: str) -> bool:
        """Forget a node row's watermark and ``syncId``; False if there is no such row."""
        with self.atomic() as session:
            cursor = session.conn.execute(
                "UPDATE nodes SET lastSyncGen = NULL, syncId = NULL, peerGen = NULL WHERE name = ?",
                (name,),
            )
            return cursor.rowcount > 0

    def delete_node(self, name: str) -> bool:
        """Remove a node row (Clear Job Replication Information); False if there is none.

        Only bookkeeping goes: no element, generation or conflict entry changes.
        """
        with self.atomic() as session:
            cursor = session.conn.execute("DELETE FROM nodes WHERE name = ?", (name,))
            return cursor.rowcount > 0

    # -- identity and incarnations (docs/design.md §4, "Restores and rebuilds") ---------

    def identity(self) -> Dict[str, Any]:
        """``instanceId`` (made with the database), ``incarnation`` (the name local
        edits count under) and ``generation``, read in one snapshot."""
        with self.reading() as session:
            return {
                "instanceId": session.meta("instance") or "",
                "incarnation": session.incarnation(),
                "generation": session.generation(),
            }

    def highest_job_id(self, start: int, size: int) -> Optional[int]:
        """The highest job id held in ``[start, start + size)``, tombstones too."""
        with self.reading() as session:
            row = session.conn.execute(
                "SELECT MAX(local_id) FROM elements WHERE kind = 'Job' "
                "AND local_id >= ? AND local_id < ?",
                (start, start + size),
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def new_incarnation(self, since_gen: int, job_id_floor: Optional[int] = None) -> Dict[str, Any]:
        """Take a new incarnation of this repository's name after it went back in time.

        Every element changed here (empty ``via``) after *since_gen*, its last confirmed
        synchronization, whose vector holds a counter of the old incarnation is
        re-stamped: the counter of the old incarnation, which the
        lost versions may have used too, is taken out of its vector and the new
        incarnation's is set, so the version meets any lost one as a concurrent change
        (a logged conflict), never as an older or newer one. Content, ``modified`` and
        ``origin`` are kept. New jobs are numbered from *job_id_floor* on, at least.

        :returns: ``{"incarnation": new name, "restamped": count}``.
        """
        with self.atomic() as session:
            old = session.incarnation()
            new = f"{self.repository}~{secrets.token_hex(4)}"
            session.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('incarnation', ?)", (new,)
            )
            if job_id_floor is not None:
                floor = max(int(session.meta("jobIdFloor") or 0), job_id_floor)
                session.conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('jobIdFloor', ?)",
                    (str(floor),),
                )
            rows = session.conn.execute(
                f"SELECT {COLUMNS} FROM elements WHERE gen > ? AND via = ''", (since_gen,)
            ).fetchall()
            restamped = 0
            for row in rows:
                element = row_element(row).element
                if old not in element.vv:
                    # No counter of the old incarnation, none reused: left alone (a
                    # rebuilt repository's default items keep their empty vector, so
                    # any edit made elsewhere still supersedes them).
                    continue
                vv = {k: v for k, v in element.vv.items() if k != old}
                vv[new] = 1
                session.write(replace(element, vv=vv), "")
                restamped += 1
            return {"incarnation": new, "restamped": restamped}

    # -- conflicts --------------------------------------------------------------------

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]:
        """The conflict log (losers with their content), oldest first.

        Each entry names the element (``guid``, ``kind``, ``id``: the job's id for a job,
        a hold or an activity record; ``name`` where it has one) and ``fields``, the
        content fields whose values differ between winner and loser (empty for entries
        logged before the log recorded them).
        """
        with self.reading() as session:
            rows = session.conn.execute(
                "SELECT guid, kind, time, gen, reason, winner_vv, winner_modified, "
                "winner_origin, loser_vv, loser_modified, loser_origin, loser_deleted, "
                "loser_content, job_id, name, fields FROM conflicts WHERE gen > ? ORDER BY id",
                (since_gen or 0,),
            ).fetchall()
        return [
            {
                "guid": r[0],
                "kind": r[1],
                "id": r[13],
                "name": r[14],
                "fields": json.loads(r[15]),
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
            importer = Importer(session, sender)
            importer.add(elements)
            return importer.finish()

    def import_file(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        max_bytes: Optional[int] = None,
        peer: Optional[str] = None,
        peer_seq: Optional[int] = None,
    ) -> ImportResult:
        """Validate a whole exchange document, then apply it in one transaction.

        One pass for a valid document: every element is validated as it is read, and an
        invalid one raises inside the transaction, which then rolls back.

        :param peer: the sending repository, whose node row records *peer_seq* (as its
            ``peerSeq``, only moving forward) in the same transaction: the sequence
            number the sender bumped before the data left it. A sender later restored to
            before that bump holds a smaller one, which is how the restore is found even
            though nothing else was confirmed (docs/design.md §4, "Restores and
            rebuilds"). Both or neither.
        :raises wmsync.errors.ExchangeFormatError: the document is invalid; nothing
            changed.
        :raises ImportRefused: the document cannot be applied; nothing changed.
        :raises UnknownPeer: *peer* has no node row here; nothing changed.
        """
        if (peer is None) != (peer_seq is None):
            raise ValueError("peer and peer_seq go together")
        limit = exchange.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        with self.atomic() as session:
            if peer is not None and peer_seq is not None:
                # First: an unknown peer is refused before the document is read.
                if not session.confirm_peer_seq(peer, peer_seq):
                    raise UnknownPeer(f"no node row of {peer} to record its sequence number")
            # Room for the GUID index of a large import (pages are taken as needed;
            # this connection ends with the request).
            session.conn.execute(f"PRAGMA cache_size = {-IMPORT_CACHE_KIB}")
            session.conn.execute("PRAGMA temp_store = MEMORY")
            return import_document(session, os.fspath(path), max_bytes=limit)

    def export(
        self,
        directory: Union[str, os.PathLike[str]],
        since_gen: int = 0,
        exclude_via: Optional[str] = None,
        *,
        until_gen: Optional[int] = None,
        max_count: Optional[int] = None,
        after: Optional[str] = None,
    ) -> ExportFile:
        """Write the versions after *since_gen* to a new exchange document.

        Rows and the generation they cover are read in one snapshot. A split export
        (*max_count*) holds at most that many, in document order; its answer says
        whether ``more`` follow and the cursor the next chunk starts ``after``. Every
        chunk passes the first chunk's generation as *until_gen*, so that all of them
        cover the same generation (a version rewritten meanwhile has a later
        generation and goes to the next synchronization).

        An element that cannot travel (see :func:`wmsync.exchange.write_document`) is
        left out and listed in ``skipped``; the document still covers the generation,
        so whoever reads it must not move a watermark past it.

        :raises ValueError: an *after* cursor this store did not write.
        """
        start = chunk_cursor(after) if after else None
        folder = _as_path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        export_id = secrets.token_hex(16)
        path = folder / f"{export_id}.jxl"
        partial = folder / f"{export_id}.part"
        export_time = self.now_ms()
        try:
            with self.reading() as session:
                generation = session.generation()
                if until_gen is not None:
                    generation = min(generation, until_gen)
                header = exchange.ExchangeHeader(
                    repository=self.repository,
                    generation=generation,
                    since_gen=since_gen,
                    export_time=export_time,
                )
                limit = None if max_count is None else max_count + 1  # one more: "more?"
                rows: Generator[Element, None, None] = session.elements_since(
                    since_gen, exclude_via, until_gen=generation, after=start, limit=limit
                )
                last: List[Element] = []
                skipped: List[exchange.LeftOut] = []  # what cannot travel is left out
                with open(partial, "wb") as target:
                    count = exchange.write_document(
                        target, header, _first(rows, max_count, last), left_out=skipped
                    )
                more = max_count is not None and next(rows, None) is not None
                rows.close()  # let go of its cursor now
            os.replace(partial, path)
        finally:
            if partial.exists():
                partial.unlink()
        cursor = chunk_key_text(last[0]) if more and last else None
        return ExportFile(
            export_id,
            path,
            generation,
            since_gen,
            export_time,
            count,
            more=more,
            after=cursor,
            skipped=skipped,
        )

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
        """:func:`wmsync.repository.bulk.insert_jobs` on this store."""
        return bulk.insert_jobs(
            self,
            count,
            job_type_id=job_type_id,
            user=user,
            fields=fields,
            name_prefix=name_prefix,
        )

    def bulk_update_jobs(self, ids: Sequence[int], changes: Mapping[str, str]) -> int:
        """:func:`wmsync.repository.bulk.update_jobs` on this store."""
        return bulk.update_jobs(self, ids, changes)


# replication/info reports the highest own counter on every run (``ownCounter``). A pass
# over every element costs about 40 ms per 10^5 on each repository, run after run, so the
# store keeps a mark in ``meta``: the counter as of a generation (written with node rows,
# which every run writes). An element's own counter never goes down under one
# incarnation (edits bump it, imports keep the merged or dominating vector, no element
# row is ever removed), so the highest is the mark's or that of a row written after it:
# an index search on ``gen``. The mark lives in the same database, so a restore puts back
# the mark that goes with the restored elements.
OWN_COUNTER_MARK = "ownCounterMark"


def highest_own_counter(session: Session) -> int:
    """The highest counter of the repository's current incarnation in any version
    vector it holds (0: none): a mark that only a restore takes back (docs/design.md §4,
    "Restores and rebuilds"). Read from the rows written since the last
    :func:`remember_own_counter` of this incarnation, or all rows without one."""
    incarnation = session.incarnation()
    mark = _own_counter_mark(session, incarnation)
    if mark is None:
        return _own_counter_after(session, incarnation, None)
    covered, counter = mark
    return max(counter, _own_counter_after(session, incarnation, covered))


def remember_own_counter(session: Session) -> None:
    """Write the mark :func:`highest_own_counter` starts from (in a write transaction).

    It covers the generations before this transaction's own, when it wrote elements,
    so that later writes of this transaction are read again.
    """
    incarnation = session.incarnation()
    counter = highest_own_counter(session)
    covered = session.generation() - (1 if session.allocated_generation else 0)
    mark = json.dumps({"incarnation": incarnation, "gen": covered, "counter": counter})
    session.conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (OWN_COUNTER_MARK, mark)
    )


def _own_counter_mark(session: Session, incarnation: str) -> Optional[Tuple[int, int]]:
    """(generation covered, counter) of the stored mark; ``None`` without one for this
    incarnation (or one that cannot be read: the long way then)."""
    text = session.meta(OWN_COUNTER_MARK)
    if text is None:
        return None
    try:
        mark = json.loads(text)
        if mark["incarnation"] != incarnation:
            return None
        return int(mark["gen"]), int(mark["counter"])
    except (ValueError, TypeError, KeyError):
        return None


def _own_counter_after(session: Session, incarnation: str, covered: Optional[int]) -> int:
    """The highest counter of *incarnation* in rows written after generation *covered*
    (every row with ``None``)."""
    after = "" if covered is None else " WHERE elements.gen > ?"
    extra: Tuple[int, ...] = () if covered is None else (covered,)
    if '"' in incarnation or "\\" in incarnation:  # not in a JSON path: the slow way
        row = session.conn.execute(
            "SELECT MAX(CAST(j.value AS INTEGER)) FROM elements, json_each(elements.vv) AS j "
            "WHERE j.key = ?" + after.replace(" WHERE", " AND"),
            (incarnation, *extra),
        ).fetchone()
    else:
        row = session.conn.execute(
            "SELECT MAX(CAST(json_extract(vv, ?) AS INTEGER)) FROM elements" + after,
            (f'$."{incarnation}"', *extra),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _first(rows: Iterator[Element], count: Optional[int], last: List[Element]) -> Iterator[Element]:
    """The first *count* of *rows* (all without a count), keeping the last one seen."""
    taken = 0
    while count is None or taken < count:
        element = next(rows, None)
        if element is None:
            return
        last[:] = [element]
        taken += 1
        yield element


def chunk_key_text(element: Element) -> str:
    """The cursor after *element* in document order (``deleted:kind:id:guid``)."""
    kinds = list(KINDS)
    order = kinds.index(element.kind) if element.kind in kinds else len(kinds)
    local_id = -1 if element.local_id is None else int(element.local_id)
    return f"{int(element.deleted)}:{order}:{local_id}:{element.guid}"


def chunk_cursor(text: str) -> Tuple[int, int, int, str]:
    """A cursor :func:`chunk_key_text` wrote, as the row key it stands for.

    :raises ValueError: for anything else.
    """
    parts = text.split(":", 3)
    if len(parts) != 4 or not parts[3]:
        raise ValueError(f"not an export cursor: {text[:60]!r}")
    return int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
