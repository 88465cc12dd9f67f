"""How a session applies incoming versions: the import path of
:class:`~wmsync.repository.session.Session`.

Each version goes through :func:`merge.decide`; conflicts are logged, a parent renames
job types whose names now clash, and references to elements this repository does not
hold become warnings. :meth:`ImportMixin.apply` takes :class:`Element` objects (the
reference path); :meth:`ImportMixin.apply_records` takes what
:func:`exchange.read_records` reads (the quick path, same answer).
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from wmsync import exchange
from wmsync.model import REFERENCES, Element, vv_from_text

from . import merge
from .records import ImportRefused, ImportResult, Node, StoredElement
from .tables import _COLUMNS, ID_KINDS, _dumps, _fields_json

if TYPE_CHECKING:
    from .store import Store

#: Incoming versions an import looks up and writes at once (one SELECT ... IN, one
#: executemany), instead of one query and one INSERT per element.
IMPORT_BATCH = 500

# vv text -> (vv, its JSON): most versions of a document share a few vectors.
_vv_cache: Dict[str, Tuple[Dict[str, int], str]] = {}


#: What reference checks need of an element an import wrote: ``(kind, fields)``.
_Refs = Tuple[str, Mapping[str, str]]


def _version(element: Element) -> Dict[str, Any]:
    return {"vv": dict(element.vv), "modified": element.modified, "origin": element.origin}


class ImportMixin:
    """The import path of :class:`~wmsync.repository.session.Session` (a base class of it)."""

    if TYPE_CHECKING:  # what the import path uses of Session, for the type checker
        store: Store
        conn: sqlite3.Connection
        _gen: Optional[int]
        _batch_current: Optional[Dict[str, Optional[StoredElement]]]
        _batch_ids: Optional[set[Tuple[str, int]]]
        _pending: List[Tuple[Any, ...]]

        @property
        def repository(self) -> str: ...
        def generation(self) -> int: ...
        def new_generation(self) -> int: ...
        @staticmethod
        def _row(row: Sequence[Any]) -> StoredElement: ...
        def get(self, guid: str) -> Optional[StoredElement]: ...
        def get_live(self, guid: str, kind: Optional[str] = None) -> Optional[StoredElement]: ...
        def live(self, kind: str) -> List[StoredElement]: ...
        def id_taken(self, kind: str, local_id: int) -> bool: ...
        def next_id(self, kind: str) -> int: ...
        def write(self, element: Element, via: str) -> int: ...
        def _flush(self) -> None: ...
        def edit(
            self,
            kind: str,
            guid: Optional[str],
            fields: Mapping[str, Optional[str]],
            *,
            local_id: Optional[int] = None,
            deleted: bool = False,
        ) -> Element: ...
        def node(self, name: str) -> Optional[Node]: ...

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
        taken = self._ids_taken(wanted)
        self._batch_current, self._batch_ids = current, taken
        try:
            for incoming in batch:
                self._apply_one(incoming, sender, result, touched_job_types, changed_refs)
            self._flush()
        finally:
            self._batch_current = self._batch_ids = None
            self._pending = []

    def _ids_taken(self, wanted: Mapping[str, List[int]]) -> set[Tuple[str, int]]:
        """The ``(kind, local id)`` pairs among *wanted* that this repository already uses
        (one query per kind), so that a batch knows which incoming ids to renumber."""
        taken: set[Tuple[str, int]] = set()
        for kind, ids in wanted.items():
            marks = ", ".join("?" * len(ids))
            taken.update(
                (kind, int(row[0])) for row in self.conn.execute(
                    f"SELECT local_id FROM elements WHERE kind = ? AND local_id IN ({marks})",
                    [kind, *ids],
                )
            )
        return taken

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
        taken = self._ids_taken(wanted)
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
