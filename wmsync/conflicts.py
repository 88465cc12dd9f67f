"""The conflict log of a repository, and making a loser the current version again
(docs/design.md §4 "Merge rule", §11).

Entries are numbered 1, 2, ... in log order (oldest first). The log only grows, so a
number keeps naming the same conflict; ``--restore N`` takes that number (or a GUID:
the latest conflict of that element).

A restore is a **new local edit** made through Esri's documented job operations
(``jobs/{id}/update`` with the loser's carried fields, ``close``/``reopen``,
``notes/update``, ``jobs/{id}/delete`` when the loser was a delete). It gets a new
version like any user edit, so the next synchronization carries it everywhere and the
version vectors make it supersede the winner. What documented operations cannot set
(created/started/end dates and stage, which the server sets itself; a job that was
deleted meanwhile, whose GUID cannot be created again) is named, never silently lost:
the loser's full content stays in the log (``--json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from .errors import NotFound, SyncRefused

__all__ = ["ConflictEntry", "conflict_entries", "restore"]

STAGE_CLOSED = 5  # Workflow Manager's stage of a closed job

#: Job content fields restored through ``jobs/{id}/update`` as they are (text).
_TEXT_KEYS = (
    "name",
    "description",
    "ownedBy",
    "assignedTo",
    "dataWorkspaceId",
    "parentVersion",
    "versionName",
)
#: Job content fields restored as integers (``update`` key: content field).
_NUMBER_KEYS = {
    "assignedType": "assignedType",
    "priority": "priority",
    "status": "status",
    "percent": "percentageComplete",
}
_DATE_KEYS = {"startDate": "clearStartDate", "dueDate": "clearDueDate"}
#: Content fields the REST shape of a job shows under the same key.
_COMPARABLE = (
    *_TEXT_KEYS,
    "assignedType",
    "priority",
    "status",
    "percentageComplete",
    "startDate",
    "dueDate",
)


@dataclass
class ConflictEntry:
    """One logged conflict, as ``wmsync conflicts`` lists it."""

    number: int
    guid: str
    kind: str
    job_id: Optional[int]
    name: Optional[str]
    time: Optional[int]
    winner_origin: Optional[str]
    loser_origin: Optional[str]
    loser_deleted: bool
    fields: Optional[List[str]]  # None: not known (the element is gone, or not a job)
    reason: Optional[str]
    loser: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "number": self.number,
            "guid": self.guid,
            "kind": self.kind,
            "id": self.job_id,
            "name": self.name,
            "time": _iso(self.time),
            "winner": self.winner_origin,
            "loser": self.loser_origin,
            "loser_deleted": self.loser_deleted,
            "fields": self.fields,
            "reason": self.reason,
            "loser_content": dict(self.loser.get("content") or {}),
        }

    def line(self) -> str:
        job = f"job {self.job_id}" if self.job_id is not None else "-"
        fields = "?" if self.fields is None else (", ".join(self.fields) or "-")
        loser = f"{self.loser_origin}{' (delete)' if self.loser_deleted else ''}"
        return (
            f"#{self.number}  {self.kind}  {job}  {self.name or ''!s}  {_iso(self.time)}"
            f"  winner {self.winner_origin}  loser {loser}  fields: {fields}"
        )


def _iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _jobs_api(replica: Any) -> Any:
    """The replica, when it can use the jobs API (``get``/``post``); else refused."""
    if not callable(getattr(replica, "get", None)) or not callable(getattr(replica, "post", None)):
        raise SyncRefused(
            f"{replica.display_url}: this repository's replica offers no "
            "jobs API; restoring is not supported for it yet"
        )
    return replica


class _Jobs:
    """Looks up jobs by GUID lazily (only when a log entry lacks its job id)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._by_guid: Optional[Dict[str, int]] = None

    def id_of(self, guid: Optional[str]) -> Optional[int]:
        if not guid:
            return None
        if self._by_guid is None:
            self._by_guid = {}
            for job_id in self.api.get("jobs").get("jobIds") or []:
                found = self.api.get(f"jobs/{job_id}").get("guid")
                if found:
                    self._by_guid[str(found)] = int(job_id)
        return self._by_guid.get(guid)

    def current(self, job_id: int) -> Optional[Dict[str, Any]]:
        try:
            job: Dict[str, Any] = self.api.get(f"jobs/{job_id}")
        except NotFound:
            return None
        job["notes"] = self.api.get(f"jobs/{job_id}/notes").get("notes") or ""
        return job


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _differences(content: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
    """The fields a loser's content and the current job (its REST shape) differ in."""
    differ = [
        key
        for key in _COMPARABLE
        if _as_text(content.get(key)) != _as_text(current.get(key))
        and not (content.get(key) is None and current.get(key) in ("", 0, None))
    ]
    if _as_text(content.get("notes")) != _as_text(current.get("notes")):
        differ.append("notes")
    return differ


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def conflict_entries(replica: Any) -> List[ConflictEntry]:
    """The repository's conflict log, numbered, with job id, name and differing fields
    (from the log when it carries them, else worked out from the current job)."""
    raw = replica.conflicts()
    jobs: Optional[_Jobs] = None
    found: List[ConflictEntry] = []
    for number, entry in enumerate(raw, 1):
        loser, winner = _mapping(entry.get("loser")), _mapping(entry.get("winner"))
        content = _mapping(loser.get("content"))
        kind = str(entry.get("kind") or "")
        job_id = entry.get("id")
        fields = entry.get("fields") if isinstance(entry.get("fields"), list) else None
        if (job_id is None or fields is None) and kind in ("Job", "Hold", "Activity"):
            jobs = jobs or _Jobs(_jobs_api(replica))
            if job_id is None:
                guid = entry.get("guid") if kind == "Job" else content.get("job")
                job_id = jobs.id_of(str(guid or ""))
            if fields is None and kind == "Job" and job_id is not None and not loser.get("deleted"):
                current = jobs.current(int(job_id))
                fields = _differences(content, current) if current is not None else None
        found.append(
            ConflictEntry(
                number=number,
                guid=str(entry.get("guid") or ""),
                kind=kind,
                job_id=None if job_id is None else int(job_id),
                name=entry.get("name") or content.get("name") or content.get("userName"),
                time=entry.get("time"),
                winner_origin=winner.get("origin"),
                loser_origin=loser.get("origin"),
                loser_deleted=bool(loser.get("deleted")),
                fields=fields,
                reason=entry.get("reason"),
                loser=loser,
            )
        )
    return found


def pick(entries: List[ConflictEntry], which: str) -> ConflictEntry:
    """The entry *which* names: its number, or a GUID (the latest conflict of it).

    :raises SyncRefused: no such entry.
    """
    text = which.strip().lstrip("#")
    if text.isdigit():
        for entry in entries:
            if entry.number == int(text):
                return entry
        raise SyncRefused(f"there is no conflict #{text} (the log has {len(entries)})")
    matching = [e for e in entries if e.guid.lower() == text.lower()]
    if not matching:
        raise SyncRefused(f"no conflict of the element {which!r} in the log")
    return matching[-1]


@dataclass
class Restored:
    """What a restore did (``done``) and what it could not bring back (``not_restored``)."""

    entry: ConflictEntry
    done: List[str] = field(default_factory=list)
    not_restored: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        head = (
            f"Conflict #{self.entry.number}: the version of {self.entry.loser_origin} "
            f"is the current version of job {self.entry.job_id} again (a new local "
            "edit: the next synchronization carries it to every repository)"
        )
        out = [head] + [f"  {text}" for text in self.done]
        out += [f"  not restored: {text}" for text in self.not_restored]
        return out


def restore(replica: Any, which: str, entries: Optional[List[ConflictEntry]] = None) -> Restored:
    """Make the loser of conflict *which* the current version again, as a local edit.

    :raises SyncRefused: no such conflict, not a job, or the job no longer exists;
        nothing was changed.
    """
    entries = conflict_entries(replica) if entries is None else entries
    entry = pick(entries, which)
    if entry.kind != "Job":
        raise SyncRefused(
            f"conflict #{entry.number} is of a {entry.kind}: only a job's losing version "
            "can be restored through Workflow Manager's documented operations; the "
            "loser's content is in 'wmsync conflicts --json'"
        )
    api = _jobs_api(replica)
    jobs = _Jobs(api)
    if entry.job_id is None:
        raise SyncRefused(
            f"conflict #{entry.number}: its job is no longer in this "
            "repository; nothing was changed"
        )
    current = jobs.current(entry.job_id)
    if current is None:
        raise SyncRefused(
            f"conflict #{entry.number}: job {entry.job_id} was deleted since; a deleted "
            "job cannot be created again under its identity over REST. The loser's "
            "content is in 'wmsync conflicts --json'; nothing was changed"
        )
    done = Restored(entry)
    job = entry.job_id
    if entry.loser_deleted:
        api.post(f"jobs/{job}/delete")
        done.done.append(f"job {job} deleted (the losing version was a delete)")
        return done
    content: Mapping[str, Any] = entry.loser.get("content") or {}
    _restore_stage(api, job, content, current, done)
    properties = _properties(api, jobs, content, current, done)
    if properties:
        api.post(f"jobs/{job}/update", properties=properties)
        done.done.append("fields: " + ", ".join(sorted(properties)))
    notes = _as_text(content.get("notes"))
    if notes != _as_text(current.get("notes")):
        api.post(f"jobs/{job}/notes/update", notes=notes)
        done.done.append("notes")
    for key in ("createdDate", "startedDate", "endDate"):
        if _as_text(content.get(key)) != _as_text(current.get(key)) and content.get(key):
            done.not_restored.append(f"{key} (the server sets it)")
    return done


def _restore_stage(
    api: Any, job: int, content: Mapping[str, Any], current: Mapping[str, Any], done: Restored
) -> None:
    was_closed = _as_text(content.get("stage")) == str(STAGE_CLOSED)
    is_closed = _as_text(current.get("stage")) == str(STAGE_CLOSED)
    if was_closed and not is_closed:
        api.post(f"jobs/{job}/close")
        done.done.append("closed again")
    elif is_closed and not was_closed:
        api.post(f"jobs/{job}/reopen")
        done.done.append("reopened")


def _properties(
    api: Any, jobs: _Jobs, content: Mapping[str, Any], current: Mapping[str, Any], done: Restored
) -> Dict[str, Any]:
    """The ``properties`` of ``jobs/{id}/update`` that bring the loser's fields back."""
    properties: Dict[str, Any] = {}
    for key in _TEXT_KEYS:
        if _as_text(content.get(key)) != _as_text(current.get(key)):
            properties[key] = _as_text(content.get(key))
    for key, name in _NUMBER_KEYS.items():
        if content.get(name) is not None and _as_text(content.get(name)) != _as_text(
            current.get(name)
        ):
            properties[key] = int(content[name])
    for key, clear in _DATE_KEYS.items():
        if _as_text(content.get(key)) != _as_text(current.get(key)):
            if content.get(key) is None:
                properties[clear] = True
            else:
                properties[key] = int(content[key])
    type_guid = content.get("jobType")
    if type_guid:
        types = {str(t.get("guid")): t.get("id") for t in api.get("jobTypes").get("jobTypes") or []}
        type_id = types.get(str(type_guid))
        if type_id is None:
            done.not_restored.append("jobType (that job type is not in this repository)")
        elif type_id != current.get("jobTypeId"):
            properties["jobTypeId"] = type_id
    parent_guid = content.get("parentJob")
    if parent_guid:
        parent_id = jobs.id_of(str(parent_guid))
        if parent_id is None:
            done.not_restored.append("parentJob (that job is not in this repository)")
        elif parent_id != current.get("parentJobId"):
            properties["parentJobId"] = parent_id
    elif current.get("parentJobId"):
        done.not_restored.append("parentJob (documented operations cannot clear it)")
    return properties
