"""Imports: an :class:`Importer` applies one document's versions in an open transaction,
and :func:`import_document` reads a document into one.

Each version goes through :func:`merge.decide`; conflicts are logged (with the job's id,
the element's name and the fields that differ), a parent renames job types whose names
now clash, and references to elements this repository does not hold become warnings.

:meth:`Importer.add` takes :class:`Element` objects (what the reference reader,
:func:`wmsync.exchange.read_document`, gives). :meth:`Importer.add_records` is the
quick path for large documents: it takes the records :mod:`.quick` reads and sends the
common cases (a new element with a free id, the same version again) straight from the
record to the row; every other record becomes an :class:`Element` (with the exchange's
one builder, :func:`wmsync.exchange.to_element`) and takes the same road as
:meth:`Importer.add`. Same answer, same rows.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from wmsync import exchange
from wmsync.model import REFERENCES, Element, vv_from_text

from . import merge
from .quick import NotCertain, read_records
from .records import ImportRefused, ImportResult, StoredElement
from .session import Session
from .tables import COLUMNS, ID_KINDS, UPSERT, dumps, element_row, fields_json, row_element

#: Incoming versions an import looks up and writes at once (one SELECT ... IN, one
#: executemany), instead of one query and one INSERT per element.
IMPORT_BATCH = 500

# vv text -> (vv, its JSON): most versions of a document share a few vectors.
_vv_cache: Dict[str, Tuple[Dict[str, int], str]] = {}

#: What reference checks need of an element an import wrote: ``(kind, fields)``.
_Refs = Tuple[str, Mapping[str, str]]

#: Kinds that belong to a job (their ``job`` field) and follow its fate.
_CHILD_KINDS = ("Hold", "Activity")

#: The field that names an element, per kind (users are named by their user name).
_NAME_FIELD = {"User": "userName"}


def _version(element: Element) -> Dict[str, Any]:
    return {"vv": dict(element.vv), "modified": element.modified, "origin": element.origin}


def differing_fields(a: Element, b: Element) -> List[str]:
    """The content fields whose values differ between two versions, sorted (a tombstone
    deleted on purpose has none, so against one every field of the other differs)."""
    return sorted(
        name for name in set(a.fields) | set(b.fields) if a.fields.get(name) != b.fields.get(name)
    )


def element_name(*versions: Element) -> Optional[str]:
    """The name of an element (the first of *versions* that has one), if its kind has
    names."""
    for version in versions:
        name = version.fields.get(_NAME_FIELD.get(version.kind, "name"))
        if name is not None:
            return name
    return None


class Importer:
    """One import into a session's open transaction: add the incoming versions in
    document order (:meth:`add`, :meth:`add_records`), then :meth:`finish`.

    If anything raises, the caller's transaction must be rolled back (``Store.atomic``
    and :meth:`Session.savepoint` do).

    :param session: a writable session.
    :param sender: the sending repository (stored as ``via`` of what is imported).
    """

    def __init__(self, session: Session, sender: str) -> None:
        self.session = session
        self.sender = sender
        self.result = ImportResult(import_time=session.store.now_ms())
        self._conn = session.conn
        self._touched_job_types: List[str] = []
        self._changed_refs: Dict[str, _Refs] = {}
        # For the rule "holds and activity records follow their job" (finish()): jobs
        # whose deleted flag this import changed (or that arrived deleted), and the holds
        # and activity records it wrote that name a job.
        self._jobs_flipped: Dict[str, None] = {}
        self._children: Dict[str, None] = {}
        # While a batch is applied: the versions its GUIDs have here (``None``: absent),
        # the (kind, id) pairs taken, and the rows written but not yet flushed.
        self._current: Dict[str, Optional[StoredElement]] = {}
        self._taken: Set[Tuple[str, int]] = set()
        self._pending: List[Tuple[Any, ...]] = []

    # -- adding versions

    def add(self, elements: Iterable[Element]) -> None:
        """Apply incoming versions, in order.

        :raises ImportRefused: an element cannot be applied.
        """
        batch: List[Element] = []
        for incoming in elements:
            batch.append(incoming)
            if len(batch) >= IMPORT_BATCH:
                self._apply_batch(batch)
                batch = []
        self._apply_batch(batch)

    def add_records(self, batches: Iterable[List[exchange.Record]]) -> None:
        """:meth:`add` for what :func:`.quick.read_records` reads: the same result.

        :raises ImportRefused: as :meth:`add`.
        :raises NotCertain: a record the quick path cannot vouch for (a bad vv): the
            caller undoes what was done and reads the document with the reference reader.
        """
        waiting: List[exchange.Record] = []
        for records in batches:
            waiting.extend(records)
            while len(waiting) >= IMPORT_BATCH:
                self._apply_records(waiting[:IMPORT_BATCH])
                del waiting[:IMPORT_BATCH]
        self._apply_records(waiting)

    def finish(self) -> ImportResult:
        """After the last version: the parent's renames, reference warnings, generation."""
        result = self.result
        self._flush()
        followed = self._follow_jobs()
        if self._touched_job_types and self._is_parent():
            self._rename_duplicates(self._touched_job_types)
        known: Dict[str, Optional[str]] = {}
        for guid, (kind, fields) in self._changed_refs.items():
            if guid not in followed:
                self._check_references(guid, kind, fields, known)
        result.generation = self.session.generation()
        return result

    # -- batches

    def _begin_batch(self, wanted: Mapping[str, List[int]]) -> None:
        self._taken = self._ids_taken(wanted)
        self._pending.clear()

    def _apply_batch(self, batch: List[Element]) -> None:
        """Apply versions in order, reading what they need in two queries and writing
        them in one ``executemany``; the same answer as applying them one by one."""
        if not batch:
            return
        guids = list({e.guid for e in batch})
        current: Dict[str, Optional[StoredElement]] = dict.fromkeys(guids)
        for row in self._select(guids):
            current[row[0]] = row_element(row)
        wanted: Dict[str, List[int]] = {}
        for e in batch:  # ids that new elements bring: are they taken here?
            if e.local_id is not None and current.get(e.guid) is None:
                wanted.setdefault(e.kind, []).append(e.local_id)
        self._current = current
        self._begin_batch(wanted)
        for incoming in batch:
            self._apply_one(incoming)
        self._flush()

    def _select(self, guids: List[str]) -> Any:
        marks = ", ".join("?" * len(guids))
        return self._conn.execute(f"SELECT {COLUMNS} FROM elements WHERE guid IN ({marks})", guids)

    def _ids_taken(self, wanted: Mapping[str, List[int]]) -> Set[Tuple[str, int]]:
        """The ``(kind, local id)`` pairs among *wanted* that this repository already uses
        (one query per kind), so that a batch knows which incoming ids to renumber."""
        taken: Set[Tuple[str, int]] = set()
        for kind, ids in wanted.items():
            marks = ", ".join("?" * len(ids))
            taken.update(
                (kind, int(row[0]))
                for row in self._conn.execute(
                    f"SELECT local_id FROM elements WHERE kind = ? AND local_id IN ({marks})",
                    [kind, *ids],
                )
            )
        return taken

    def _flush(self) -> None:
        """Write the rows the batch has kept back."""
        if self._pending:
            self._conn.executemany(UPSERT, self._pending)
            self._pending.clear()  # in place: the quick path holds the list

    def _apply_records(self, records: List[exchange.Record]) -> None:
        if not records:
            return
        guids = list({r[1] for r in records})
        rows: Dict[str, Tuple[Any, ...]] = {}  # as stored, or as this batch wrote it
        for row in self._select(guids):
            rows[row[0]] = tuple(row)
        wanted: Dict[str, List[int]] = {}
        for r in records:
            if r[2] is not None and r[1] not in rows:
                wanted.setdefault(r[0], []).append(r[2])
        current: Dict[str, Optional[StoredElement]] = {}
        self._current = current
        self._begin_batch(wanted)
        taken, pending, result, sender = self._taken, self._pending, self.result, self.sender
        slow: Set[str] = set()  # GUIDs whose state is in ``current`` from now on
        vvs = _vv_cache
        for record in records:
            kind, guid, local_id, vv_text, modified, origin, deleted, fields = record
            cached = vvs.get(vv_text)
            if cached is None:
                try:
                    vv = vv_from_text(vv_text)
                except ValueError:
                    raise NotCertain("vv") from None  # the reference reader names it
                if len(vvs) > 10_000:
                    vvs.clear()
                cached = vvs[vv_text] = (vv, dumps(vv))
            if guid not in slow:
                row = rows.get(guid)
                fields_text = fields_json(fields)
                if row is None:
                    if kind not in ID_KINDS:
                        local_id = None
                    if local_id is None and kind in ID_KINDS:
                        pass  # needs an id from the allocator: the long way
                    elif local_id is None or (kind, local_id) not in taken:
                        # added as it is (merge.decide: ADD)
                        gen = self.session.new_generation()
                        row = (
                            guid,
                            kind,
                            local_id,
                            fields_text,
                            cached[1],
                            modified,
                            origin,
                            1 if deleted else 0,
                            sender,
                            gen,
                        )
                        pending.append(row)
                        rows[guid] = row
                        if local_id is not None:
                            taken.add((kind, local_id))
                        if kind in _CHILD_KINDS and fields.get("job"):
                            self._children[guid] = None
                        if deleted:
                            if kind == "Job":
                                self._jobs_flipped[guid] = None
                            result.deleted += 1
                            continue
                        result.added += 1
                        if kind == "JobType":
                            self._touched_job_types.append(guid)
                        if kind in REFERENCES:
                            self._changed_refs[guid] = (kind, fields)
                        continue
                elif (
                    row[4] == cached[1]
                    and row[3] == fields_text
                    and row[1] == kind
                    and row[7] == (1 if deleted else 0)
                ):
                    result.unchanged += 1  # the same version (merge.decide: UNCHANGED)
                    continue
                current[guid] = None if row is None else row_element(row)
                slow.add(guid)
            self._apply_one(exchange.to_element(record, cached[0]))
        self._flush()

    # -- one version

    def _write(self, version: Element, via: str) -> None:
        gen = self.session.new_generation()
        self._current[version.guid] = StoredElement(version, via, gen)
        if version.local_id is not None:
            self._taken.add((version.kind, version.local_id))
        self._pending.append(element_row(version, via, gen))

    def _next_id(self, kind: str) -> int:
        self._flush()  # rows not written yet hold ids too
        return self.session.next_id(kind)

    def _apply_one(self, incoming: Element) -> None:
        result = self.result
        current = self._current[incoming.guid]
        if current is not None and current.kind != incoming.kind:
            raise ImportRefused(
                f"element {incoming.guid} is a {incoming.kind} in the document "
                f"but a {current.kind} here"
            )
        decision = merge.decide(current.element if current else None, incoming)
        if decision.action == merge.CONFLICT:
            self._log_conflict(decision, current)
        if decision.result is None:
            result.unchanged += 1
            return
        version = decision.result
        if current is not None:
            local_id = current.local_id
            if local_id is None and version.kind in ID_KINDS:
                local_id = self._next_id(version.kind)
        elif version.kind not in ID_KINDS:
            local_id = None
        elif version.local_id is not None and (version.kind, version.local_id) not in self._taken:
            local_id = version.local_id
        else:
            local_id = self._next_id(version.kind)
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
        via = "" if decision.local else self.sender
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
        self._write(version, via)
        if version.kind == "Job":
            if version.deleted != (current.element.deleted if current else False):
                self._jobs_flipped[version.guid] = None
        elif version.kind in _CHILD_KINDS and version.fields.get("job"):
            self._children[version.guid] = None
        if version.deleted:
            result.deleted += 1
        elif current is None:
            result.added += 1
        else:
            result.updated += 1
        if not version.deleted:
            if version.kind == "JobType":
                self._touched_job_types.append(version.guid)
            if version.kind in REFERENCES:
                self._changed_refs[version.guid] = (version.kind, version.fields)

    # -- conflicts

    def _job_id(
        self, kind: str, current: Optional[StoredElement], *versions: Element
    ) -> Optional[int]:
        """The id of the job a conflicting element is or belongs to (``None``: none)."""
        if kind == "Job":
            return current.local_id if current is not None else None
        if kind not in ("Hold", "Activity"):
            return None
        job_guid = next((v.fields["job"] for v in versions if v.fields.get("job")), None)
        if job_guid is None:
            return None
        self._flush()  # the job may be a row of this batch
        if job_guid in self._current:
            job = self._current[job_guid]
            return job.local_id if job is not None and job.kind == "Job" else None
        row = self._conn.execute(
            "SELECT local_id FROM elements WHERE guid = ? AND kind = 'Job'", (job_guid,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _log_conflict(self, decision: merge.Decision, current: Optional[StoredElement]) -> None:
        winner, loser = decision.winner, decision.loser
        assert winner is not None and loser is not None
        job_id = self._job_id(loser.kind, current, winner, loser)
        name = element_name(winner, loser)
        fields = differing_fields(winner, loser)
        self.result.conflicts.append(
            {
                "guid": loser.guid,
                "kind": loser.kind,
                "id": job_id,
                "name": name,
                "fields": fields,
                "winner": _version(winner),
                "loser": _version(loser),
                "reason": decision.reason,
            }
        )
        loser_vv, loser_hash = dumps(dict(loser.vv)), loser.content_hash()
        seen = self._conn.execute(
            "SELECT 1 FROM conflicts WHERE guid = ? AND loser_vv = ? AND loser_hash = ? "
            "AND winner_vv = ? AND winner_modified = ? AND winner_origin = ?",
            (
                loser.guid,
                loser_vv,
                loser_hash,
                dumps(dict(winner.vv)),
                winner.modified,
                winner.origin,
            ),
        ).fetchone()
        if seen:
            return
        # The conflict belongs to the generation that stores its resolution; when the
        # local version wins and nothing is written, to the current one.
        session = self.session
        gen = session.new_generation() if decision.result is not None else session.generation()
        self._conn.execute(
            "INSERT INTO conflicts (guid, kind, time, gen, reason, winner_vv, "
            "winner_modified, winner_origin, loser_vv, loser_modified, loser_origin, "
            "loser_deleted, loser_content, loser_hash, job_id, name, fields) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                loser.guid,
                loser.kind,
                session.store.now_ms(),
                gen,
                decision.reason,
                dumps(dict(winner.vv)),
                winner.modified,
                winner.origin,
                loser_vv,
                loser.modified,
                loser.origin,
                1 if loser.deleted else 0,
                dumps(dict(loser.fields)),
                loser_hash,
                job_id,
                name,
                dumps(fields),
            ),
        )

    # -- after the last version

    def _follow_jobs(self) -> Set[str]:
        """Holds and activity records follow their job (docs/design.md §4): after the
        import, each one of a job whose deleted flag changed, and each one the import
        wrote, that is live while its job is deleted here becomes a tombstone keeping its
        content, and each one deleted with its job while the job is live here comes back;
        both as local edits (they travel on; two repositories making the same change
        meet as the same content, which the merge rule merges without a conflict).

        :returns: the GUIDs changed.
        """
        session = self.session
        changed: Set[str] = set()
        for job_guid in self._jobs_flipped:
            changed.update(e.guid for e in session.follow_job(job_guid))
        children = [g for g in self._children if g not in changed]
        for start in range(0, len(children), IMPORT_BATCH):
            part = children[start : start + IMPORT_BATCH]
            marks = ", ".join("?" * len(part))
            rows = self._conn.execute(
                f"SELECT {', '.join('c.' + c for c in COLUMNS.split(', '))}, j.deleted "
                "FROM elements c JOIN elements j "
                "ON j.guid = json_extract(c.fields, '$.job') AND j.kind = 'Job' "
                f"WHERE c.guid IN ({marks}) AND c.deleted != j.deleted",
                part,
            ).fetchall()
            for row in rows:
                session.set_deleted_with_job(row_element(row[:-1]), bool(row[-1]))
                changed.add(row[0])
        return changed

    def _is_parent(self) -> bool:
        own = self.session.node(self.session.repository)
        return bool(own and own.is_parent)

    def _rename_duplicates(self, guids: List[str]) -> None:
        session = self.session
        for guid in dict.fromkeys(guids):
            current = session.get_live(guid, "JobType")
            if current is None:
                continue
            live = session.live("JobType")
            name = current.fields.get("name", "")
            same = [e.element for e in live if e.fields.get("name", "") == name]
            if len(same) < 2:
                continue
            names = [e.fields.get("name", "") for e in live]
            for element, new_name in merge.plan_renames(same, names):
                fields = dict(element.fields)
                fields["name"] = new_name
                session.edit("JobType", element.guid, fields)
                self.result.renamed.append({"guid": element.guid, "from": name, "to": new_name})

    def _live_kind(self, guid: str, known: Dict[str, Optional[str]]) -> Optional[str]:
        """The kind of a live element (``None`` if absent or deleted), cached in *known*."""
        if guid not in known:
            row = self._conn.execute(
                "SELECT kind FROM elements WHERE guid = ? AND deleted = 0", (guid,)
            ).fetchone()
            known[guid] = row[0] if row else None
        return known[guid]

    def _check_references(
        self, guid: str, kind: str, fields: Mapping[str, str], known: Dict[str, Optional[str]]
    ) -> None:
        for field_name, target_kind in REFERENCES.get(kind, {}).items():
            target = fields.get(field_name)
            if target and self._live_kind(target, known) != target_kind:
                self.result.warnings.append(
                    f"{kind} {guid} references {target_kind} {target}, "
                    "which this repository does not hold"
                )


def import_document(session: Session, source: str, *, max_bytes: int) -> ImportResult:
    """Validate and apply a whole exchange document in *session*'s transaction.

    The quick reading first (:func:`.quick.read_records`), in a savepoint; if it cannot
    vouch for the document (:class:`NotCertain`), what it did is undone and the
    reference reader reads the document again, accepting it or raising the reference
    error (with line and element). A valid document never takes the second pass.

    :raises wmsync.errors.ExchangeFormatError: the document is invalid (the caller's
        transaction must roll back).
    :raises ImportRefused: the document cannot be applied (likewise).
    """
    try:
        with session.savepoint():
            with read_records(source, max_bytes=max_bytes) as records:
                importer = Importer(session, records.header.repository)
                importer.add_records(records.batches())
                return importer.finish()
    except NotCertain:
        pass  # undone; the reference reader decides
    with exchange.read_document(source, max_bytes=max_bytes) as reader:
        importer = Importer(session, reader.header.repository)
        importer.add(reader)
        return importer.finish()
