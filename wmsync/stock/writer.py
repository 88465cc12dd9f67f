"""Writing the shadow's versions to a stock server (docs/design.md §10, import).

After every import into the shadow (and after every scan, so that waiting jobs are
retried), each job whose shadow version differs from what the server was last seen to
hold is written through documented operations only: ``jobs/create`` with ``id``,
``jobs/{id}/update`` (``properties``), ``jobs/reopen``/``jobs/close``,
``notes/update``, ``jobs/{id}/delete``, ``holds/create`` and ``release``,
``activity/logAction``. Then the job is read back and recorded as seen, side effects
included (:mod:`wmsync.stock.fold`), so nothing the tool wrote comes back as a change.

Crash safety: an *intent* row is committed before the first write to a job and
cleared with the read-back; holds and activity records carry the provenance tag; a
created hold's id is recorded as soon as the server answers. A run stopped anywhere
leaves a state the next scan reads as the tool's own writes: nothing is written twice.

Configuration is never written: a job whose job type, or assigned user or group, is
missing on the server waits (it stays in the shadow, is retried by every run) and the
run warns once per missing item.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from wmsync.client import WMServerClient
from wmsync.errors import BadRequest, ConflictError, NotFound, WMSyncError
from wmsync.model import Element
from wmsync.repository.records import StoredElement
from wmsync.repository.store import Store
from wmsync.repository.tables import row_element

from . import fold, state, views
from .scan import Config, job_ids, read_job
from .state import JobClaims

log = logging.getLogger(__name__)

_NUMBERS = {"priority", "status", "assignedType", "percentageComplete", "startDate", "dueDate"}
_PROPERTY = {"percentageComplete": "percent"}
CREATE_ATTEMPTS = 5


@dataclass
class WriteOutcome:
    """What a write pass did, for the import answer and the run's report."""

    written: int = 0
    missing: Dict[Tuple[str, str], int] = field(default_factory=dict)  # (what, name) -> jobs
    renumbered: List[Dict[str, Any]] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)
    deferred: int = 0  # jobs changed on the server during the run: written next run

    def warnings(self, repository: str) -> List[str]:
        out = []
        for (what, name), count in sorted(self.missing.items()):
            out.append(
                f"{what} {name!r} is missing on {repository}: create it in Workflow Manager "
                f"Administrator; {count} job(s) wait for it and are retried by every run"
            )
        for item in self.renumbered:
            out.append(
                f"job {item['from']} is job {item['to']} on {repository}: its id was taken "
                "there by another job"
            )
        return out


def _param_user(name: str) -> str:
    return name.replace("\\", "|")


class Writer:
    """One write pass over one stock repository."""

    def __init__(
        self,
        store: Store,
        client: WMServerClient,
        config: Config,
        first: bool,
        claims: Optional[JobClaims] = None,
    ) -> None:
        self.store = store
        self.claims = claims if claims is not None else JobClaims()
        self.client = client
        self.config = config
        self.first = first
        self.repository = store.repository
        self.outcome = WriteOutcome()
        self._server_ids: Optional[Set[int]] = None

    # -- what differs ------------------------------------------------------------

    def run(self) -> WriteOutcome:
        with self.store.reading() as s:
            conn = s.conn
            jobs = [
                row_element(r)
                for r in conn.execute(
                    "SELECT guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen "
                    "FROM elements WHERE kind = 'Job' ORDER BY local_id"
                ).fetchall()
            ]
            seen_jobs = state.seen(conn, "Job")
            hold_map = {g: (k, v) for k, (_, g, v) in state.seen(conn, "Hold").items()}
            act_mapped = state.mapped_guids(conn, "Activity")
            types = {int(k): g for k, (_, g, _) in state.seen(conn, "JobType").items()}
            children: Dict[str, Tuple[List[StoredElement], List[StoredElement]]] = {}
            for job in jobs:
                if not job.deleted:
                    children[job.guid] = (
                        s.of_job("Hold", job.guid),
                        s.of_job("Activity", job.guid),
                    )
            type_names = {t.guid: t.fields.get("name", "") for t in s.live("JobType")}
            wrote = {k: v for k, (_, _, v) in state.seen(conn, "Wrote").items()}
        by_guid = {g: int(k) for k, (_, g, _) in seen_jobs.items()}
        for job in jobs:
            server_id = by_guid.get(job.guid)
            try:
                if job.deleted:
                    if server_id is not None:
                        self._delete(server_id)
                    continue
                holds, acts = children[job.guid]
                old = views.loads(seen_jobs[str(server_id)][2]) if server_id is not None else {}
                want = views.job_view_of_fields(job.fields)
                children_differ = any(
                    h.guid not in hold_map
                    or views.loads(hold_map[h.guid][1]).get("released")
                    != views.hold_view_of_fields(h.fields)["released"]
                    for h in holds
                ) or any(a.guid not in act_mapped for a in acts)
                job_differs = views.compare_keys(want) != views.compare_keys(old)
                if server_id is not None and not job_differs and not children_differ:
                    continue
                if (
                    server_id is not None
                    and not children_differ
                    and wrote.get(str(server_id)) == views.dumps(want)
                ):
                    # Written already and read back different: the server keeps its own
                    # value for some field. Writing it again each run would change nothing.
                    continue
                type_id = self._type_id(job, types, type_names, server_id)
                if not self._config_present(job, type_id, type_names, server_id):
                    continue
                if self._write_job(
                    job, server_id, type_id, holds, acts, hold_map, act_mapped, by_guid
                ):
                    self.outcome.written += 1
            except WMSyncError as exc:
                self.outcome.failures.append(f"job {job.local_id}: {exc}")
                log.warning("%s: writing job %s failed: %s", self.repository, job.local_id, exc)
        return self.outcome

    # -- configuration -------------------------------------------------------------

    def _type_id(
        self,
        job: StoredElement,
        types: Mapping[int, str],
        names: Mapping[str, str],
        server_id: Optional[int],
    ) -> Optional[int]:
        guid = job.fields.get("jobType", "")
        for type_id, known in types.items():
            if known == guid:
                return type_id
        name = names.get(guid)
        return self.config.job_type_id(name) if name else None

    def _config_present(
        self,
        job: StoredElement,
        type_id: Optional[int],
        names: Mapping[str, str],
        server_id: Optional[int],
    ) -> bool:
        missing: List[Tuple[str, str]] = []
        if server_id is None and type_id is None:
            missing.append(("job type", names.get(job.fields.get("jobType", ""), "?")))
        assigned = job.fields.get("assignedTo", "")
        kind = job.fields.get("assignedType", "0")
        if assigned and kind == "1" and assigned.lower() not in self.config.users:
            missing.append(("user", assigned))
        if assigned and kind == "2" and assigned.lower() not in self.config.groups:
            missing.append(("group", assigned))
        for item in missing:
            self.outcome.missing[item] = self.outcome.missing.get(item, 0) + 1
        return not missing

    # -- writing --------------------------------------------------------------------

    def _taken(self) -> Set[int]:
        if self._server_ids is None:
            self._server_ids = set(job_ids(self.client))
        return self._server_ids

    def _delete(self, server_id: int) -> None:
        try:
            self.client.post(f"jobs/{server_id}/delete")
        except NotFound:
            pass
        with state.transaction(self.store) as conn:
            state.forget_job(conn, server_id)
        self.outcome.written += 1

    def _write_job(
        self,
        job: StoredElement,
        server_id: Optional[int],
        type_id: Optional[int],
        holds: List[StoredElement],
        acts: List[StoredElement],
        hold_map: Mapping[str, Tuple[str, str]],
        act_mapped: Set[str],
        by_guid: Dict[str, int],
    ) -> bool:
        """Write one job; False when it was left for the next run."""
        guid = job.guid
        if server_id is None:
            server_id = self._place(job, type_id, by_guid)
        else:
            # Changed on the server since this run's scan (a user is at work on it)? Then
            # leave it: the next scan takes that edit as a local one and the merge rule
            # decides, instead of this write overwriting it unseen.
            with self.store.reading() as s:
                row = state.seen(s.conn, "Job").get(str(server_id))
            try:
                now = self._server_view(read_job(self.client, server_id), by_guid)
            except NotFound:  # deleted there since the scan
                now = {}
            if row is not None and now != views.loads(row[2]):
                self.outcome.deferred += 1
                return False
            with state.transaction(self.store) as conn:
                state.set_intent(conn, server_id, guid)
        by_guid[guid] = server_id
        with self.store.reading() as s:  # adoption may just have mapped some
            hold_map = {
                g: (k, v) for k, (_, g, v) in state.seen_of_job(s.conn, "Hold", server_id).items()
            }
            act_mapped = state.mapped_guids(s.conn, "Activity")
        read = read_job(self.client, server_id)
        want = views.job_view_of_fields(job.fields)
        have = self._server_view(read, by_guid)
        if want["closed"] == "0" and have["closed"] == "1":
            self.client.post("jobs/reopen", jobs=str(server_id))
        properties: Dict[str, Any] = {}
        for key in views.JOB_UPDATABLE:
            if want[key] == have[key] or (key == "status" and not want[key]):
                continue
            if key in ("startDate", "dueDate") and not want[key]:
                properties["clear" + key[0].upper() + key[1:]] = True
                continue
            value: Any = int(want[key]) if key in _NUMBERS else want[key]
            if key in ("ownedBy", "assignedTo"):
                value = _param_user(value)
            properties[_PROPERTY.get(key, key)] = value
        parent = want["parentJob"]
        if parent != have["parentJob"] and parent in by_guid:
            properties["parentJobId"] = by_guid[parent]
        if properties:
            self.client.post(f"jobs/{server_id}/update", properties=json.dumps(properties))
        if want["notes"] != have["notes"]:
            self.client.post(f"jobs/{server_id}/notes/update", notes=want["notes"])
        if want["closed"] == "1" and have["closed"] == "0":
            self.client.post("jobs/close", jobs=str(server_id))
        user = self.client.user
        for hold in holds:
            mapped = hold_map.get(hold.guid)
            hold_id: Optional[str] = mapped[0].split("/", 1)[1] if mapped else None
            if hold_id is None:
                answer = self.client.post(
                    f"jobs/{server_id}/holds/create",
                    type=hold.fields.get("type", ""),
                    comments=views.with_tag(
                        views.strip_tag(hold.fields.get("holdComments", "")), hold.element, user
                    ),
                )
                hold_id = str(answer.get("holdId"))
                with state.transaction(self.store) as conn:
                    state.set_seen(
                        conn,
                        "Hold",
                        f"{server_id}/{hold_id}",
                        server_id,
                        hold.guid,
                        views.dumps({}),
                    )
                released_now = "0"
            else:
                released_now = views.loads(mapped[1]).get("released", "0") if mapped else "0"
            if hold.fields.get("releaseDate") and released_now == "0":
                self.client.post(
                    f"jobs/{server_id}/holds/{hold_id}/release",
                    comments=hold.fields.get("releaseComments", ""),
                )
        for record in acts:
            if record.guid in act_mapped:
                continue
            self.client.post(
                f"jobs/{server_id}/activity/logAction",
                type=record.fields.get("type", ""),
                comments=views.with_tag(record.fields.get("message", ""), record.element, user),
            )
        read = read_job(self.client, server_id)
        with self.store.atomic() as s:
            types = {int(k): g for k, (_, g, _) in state.seen(s.conn, "JobType").items()}
            fold.record_seen(s, server_id, guid, read, types, fold.job_guids(s.conn))
            state.set_seen(s.conn, "Wrote", str(server_id), server_id, guid, views.dumps(want))
            state.clear_intent(s.conn, server_id)
        return True

    def _server_view(self, read: Any, by_guid: Mapping[str, int]) -> Dict[str, str]:
        ids = {v: k for k, v in by_guid.items()}
        with self.store.reading() as s:
            types = {int(k): g for k, (_, g, _) in state.seen(s.conn, "JobType").items()}
        return views.job_view_of_fields(fold.server_job_fields(read, types, ids))

    def _place(self, job: StoredElement, type_id: Optional[int], by_guid: Dict[str, int]) -> int:
        """Create the job on the server (or, on a shadow's first run, adopt the server's
        job with its id); returns its id there."""
        want = job.local_id or 0
        taken = self._taken()
        if want in taken and want not in by_guid.values() and self.first:
            self._adopt(job, want, by_guid)
            self.claims.claim(want, job.guid)
            return want
        target = want
        for _ in range(CREATE_ATTEMPTS):
            if target <= 0 or target in taken or target in by_guid.values():
                target = max([*taken, *by_guid.values(), want, 0]) + 1
            with state.transaction(self.store) as conn:
                state.set_intent(conn, target, job.guid)
            try:
                self.client.post(
                    "jobs/create", **self._create_params(job, type_id, target, by_guid)
                )
            except (ConflictError, BadRequest) as exc:
                # Taken meanwhile, or by a deleted job (ids are never reused)? Servers
                # word it differently: ask for the ids again.
                self._server_ids = None
                if target not in self._taken() and not isinstance(exc, ConflictError):
                    raise
                taken = self._taken()
                taken.add(target)
                with state.transaction(self.store) as conn:
                    state.clear_intent(conn, target)
                continue
            taken.add(target)
            self.claims.claim(target, job.guid)
            with state.transaction(self.store) as conn:
                state.set_seen(conn, "Job", str(target), target, job.guid, views.dumps({}))
            if target != want:
                self.outcome.renumbered.append({"guid": job.guid, "from": want, "to": target})
            return target
        raise WMSyncError(f"no free job id for job {want} on {self.repository}")

    def _create_params(
        self, job: StoredElement, type_id: Optional[int], target: int, by_guid: Mapping[str, int]
    ) -> Dict[str, Any]:
        f = job.fields
        params: Dict[str, Any] = {"jobTypeId": type_id, "id": target}
        for key in ("name", "description", "dataWorkspaceId", "parentVersion"):
            if f.get(key):
                params[key] = f[key]
        for key in ("priority", "startDate", "dueDate", "assignedType"):
            if f.get(key):
                params[key] = int(f[key])
        for key in ("ownedBy", "assignedTo"):
            if f.get(key):
                params[key] = _param_user(f[key])
        parent = f.get("parentJob")
        if parent and parent in by_guid:
            params["parentJobId"] = by_guid[parent]
        return params

    def _adopt(self, job: StoredElement, server_id: int, by_guid: Dict[str, int]) -> None:
        """A rebuilt or new shadow meets a server job with the incoming job's id: the same
        job (ids are one per job in a cluster). Where the server's version differs, the
        incoming one is written and the server's goes to the conflict log."""
        read = read_job(self.client, server_id)
        with self.store.atomic() as s:
            types = {int(k): g for k, (_, g, _) in state.seen(s.conn, "JobType").items()}
            jobs = fold.job_guids(s.conn)
            server_fields = fold.server_job_fields(read, types, jobs)
            want = views.job_view_of_fields(job.fields)
            have = views.job_view_of_fields(server_fields)
            if views.compare_keys(want) != views.compare_keys(have):
                log_conflict(
                    s.conn,
                    job.element,
                    server_fields,
                    s.generation(),
                    self.store.now_ms(),
                    self.repository,
                )
            fold.adopt(s, server_id, job.guid, read, types, jobs)
            state.set_intent(s.conn, server_id, job.guid)
        by_guid[job.guid] = server_id


def log_conflict(
    conn: Any,
    winner: Element,
    loser_fields: Mapping[str, str],
    generation: int,
    now: int,
    repository: str,
) -> None:
    """Log the server's version of a job as the loser against *winner*."""
    loser = Element(
        kind=winner.kind,
        guid=winner.guid,
        vv={},
        modified=now,
        origin=repository,
        fields=dict(loser_fields),
    )
    conn.execute(
        "INSERT INTO conflicts (guid, kind, time, gen, reason, winner_vv, winner_modified, "
        "winner_origin, loser_vv, loser_modified, loser_origin, loser_deleted, "
        "loser_content, loser_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            winner.guid,
            winner.kind,
            now,
            generation,
            "matched by id while the state store was rebuilt",
            json.dumps(dict(winner.vv)),
            winner.modified,
            winner.origin,
            "{}",
            now,
            repository,
            0,
            json.dumps(dict(loser_fields), sort_keys=True),
            loser.content_hash(),
        ),
    )
