"""An in-memory replica for fast engine tests: no HTTP, no SQLite (STYLE §5).

A :class:`MemoryRepository` keeps users (the simplest element kind) with version
vectors, a generation log, ``via``, node rows that behave like the emulator's (upsert,
``lastSyncGen`` only moves forward, ``stampLastSync``) and a conflict log. Exports are
real exchange documents (the engine validates them), held in memory. A
:class:`MemoryCluster` is the replica factory: ``cluster(url)`` opens a
:class:`MemoryReplica` on the repository at that URL, or fails to connect.

Faults and hooks are per operation name (``"export"``, ``"import_document"``,
``"update_node"`` ...): ``repo.faults["import_document"] = 1`` makes the next import
fail; ``repo.hooks["export"] = fn`` runs ``fn()`` after each export (to edit the
repository while a run is on).
"""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from wmsync import exchange
from wmsync.client import EXTENSION
from wmsync.errors import BadRequest, ConnectionFailed, MissingExtensions, NotFound
from wmsync.model import CONCURRENT, NEWER, Element, bump_vv, compare_vv, merge_vv
from wmsync.repository.renumbering import own_only

ROOT = "http://memory.test/arcgis/rest/services"


def url_of(name: str) -> str:
    return f"{ROOT}/{name}/WMServer"


@dataclass
class Stored:
    element: Element
    gen: int
    via: str = ""


@dataclass
class MemoryRepository:
    name: str
    extensions: bool = True
    generation: int = 0
    elements: Dict[str, Stored] = field(default_factory=dict)
    nodes: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    conflict_log: List[Dict[str, Any]] = field(default_factory=list)
    calls: List[tuple] = field(default_factory=list)  # (operation, arguments...)
    faults: Dict[str, int] = field(default_factory=dict)
    hooks: Dict[str, Callable[[], None]] = field(default_factory=dict)
    clock: int = 1_700_000_000_000
    _exports: Dict[str, bytes] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: job ids only (jobs do not travel here): guid -> {"id", "vv"}, for renumbering
    jobs: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return url_of(self.name)

    def now(self) -> int:
        self.clock += 1
        return self.clock

    # -- what users do ---------------------------------------------------------------

    def edit(self, user: str, full_name: str = "") -> None:
        """A local edit: create or change the user *user*."""
        with self.lock:
            guid = str(uuid.uuid5(uuid.NAMESPACE_OID, user))
            old = self.elements.get(guid)
            self.generation += 1
            self.elements[guid] = Stored(
                Element(
                    "User",
                    guid,
                    bump_vv(old.element.vv if old else {}, self.name),
                    self.now(),
                    self.name,
                    {"userName": user, "fullName": full_name},
                ),
                self.generation,
            )

    def own_job(self, local_id: int, vv: Optional[Dict[str, int]] = None) -> str:
        """A job this repository made (or, with *vv*, one it received), by id."""
        guid = str(uuid.uuid4())
        self.jobs[guid] = {"id": local_id, "vv": dict(vv or {self.name: 1})}
        return guid

    def job_ids(self) -> Dict[str, int]:
        return {guid: job["id"] for guid, job in self.jobs.items()}

    def renumber(self, start: int, size: int, dry_run: bool) -> List[Dict[str, Any]]:
        """The emulator's rule: own-only jobs outside the block take its next free ids."""
        end = start + size
        inside = [j["id"] for j in self.jobs.values() if start <= j["id"] < end]
        next_id = max(inside, default=start - 1) + 1
        moving = sorted(
            (job["id"], guid)
            for guid, job in self.jobs.items()
            if not start <= job["id"] < end and own_only(job["vv"], self.name)
        )
        done = []
        for old, guid in moving:
            done.append({"guid": guid, "from": old, "to": next_id})
            if not dry_run:
                self.jobs[guid]["id"] = next_id
            next_id += 1
        return done

    def users(self) -> Dict[str, str]:
        return {
            s.element.fields["userName"]: s.element.fields.get("fullName", "")
            for s in self.elements.values()
        }

    def versions(self) -> Dict[str, Any]:
        return {guid: (s.element.fields, dict(s.element.vv)) for guid, s in self.elements.items()}

    def ops(self, name: str) -> List[tuple]:
        return [call for call in self.calls if call[0] == name]

    # -- the replica operations (under the lock) ---------------------------------------

    def call(self, op: str, *args: Any) -> None:
        self.calls.append((op, *args))
        if self.faults.get(op, 0) > 0:
            self.faults[op] -= 1
            raise ConnectionFailed(f"{op} failed: injected", self.url)

    def info(self) -> Dict[str, Any]:
        answer: Dict[str, Any] = {
            "repository": self.name,
            "generation": self.generation,
            "nodes": [dict(row) for row in self.nodes.values()],
        }
        if self.extensions:
            answer["extensions"] = [EXTENSION]
        return answer

    def selected(self, since_gen: int, exclude_via: Optional[str]) -> List[Stored]:
        return [
            s
            for s in self.elements.values()
            if s.gen > since_gen and not (exclude_via and s.via == exclude_via)
        ]

    def update_node(self, name: str, **fields: Any) -> Optional[int]:
        row = self.nodes.setdefault(
            name,
            {
                "name": name,
                "serverURL": "",
                "isParent": False,
                "isConnected": True,
                "lastSync": None,
                "lastSyncGen": None,
                "syncId": None,
                "jobIdStart": None,
                "jobIdBlock": None,
            },
        )
        keys = {
            "server_url": "serverURL",
            "is_parent": "isParent",
            "is_connected": "isConnected",
            "sync_id": "syncId",
            "job_id_start": "jobIdStart",
            "job_id_block": "jobIdBlock",
        }
        for key, column in keys.items():
            if fields.get(key) is not None:
                row[column] = fields[key]
        gen = fields.get("last_sync_gen")
        if gen is not None:
            row["lastSyncGen"] = gen if row["lastSyncGen"] is None else max(gen, row["lastSyncGen"])
        if fields.get("stamp_last_sync"):
            row["lastSync"] = self.now()
        return row["lastSync"]

    def export(self, since_gen: int, exclude_via: Optional[str]) -> Any:
        chosen = self.selected(since_gen, exclude_via)
        buffer = io.BytesIO()
        header = exchange.ExchangeHeader(self.name, self.generation, since_gen, self.now())
        count = exchange.write_document(buffer, header, [s.element for s in chosen])
        key = f"{self.url}/replication/exports/{len(self._exports)}.jxl"
        self._exports[key] = buffer.getvalue()
        return SimpleNamespace(
            jxl_url=key, generation=self.generation, count=count, export_time=header.export_time
        )

    def take_export(self, key: str) -> bytes:
        return self._exports.pop(key)

    def merge(self, path: str) -> Dict[str, Any]:
        """Import a document, all or nothing: the newer version vector wins; concurrent
        versions go to the newer ``modified`` (then origin), the loser to the log."""
        with exchange.read_document(path) as reader:
            sender = reader.header.repository
            incoming = list(reader)
        answer: Dict[str, Any] = {"added": 0, "updated": 0, "unchanged": 0, "conflicts": []}
        for element in incoming:
            local = self.elements.get(element.guid)
            if local is None:
                self.generation += 1
                self.elements[element.guid] = Stored(element, self.generation, sender)
                answer["added"] += 1
                continue
            order = compare_vv(element.vv, local.element.vv)
            if order == NEWER:
                self.generation += 1
                self.elements[element.guid] = Stored(element, self.generation, sender)
                answer["updated"] += 1
            elif order == CONCURRENT:
                mine = local.element
                winner, loser = (
                    (element, mine)
                    if (element.modified, element.origin) > (mine.modified, mine.origin)
                    else (mine, element)
                )
                resolved = Element(
                    winner.kind,
                    winner.guid,
                    merge_vv(mine.vv, element.vv),
                    winner.modified,
                    winner.origin,
                    dict(winner.fields),
                )
                self.generation += 1
                self.elements[element.guid] = Stored(resolved, self.generation, "")
                entry = {
                    "guid": element.guid,
                    "kind": "User",
                    "winner": {"origin": winner.origin, "modified": winner.modified},
                    "loser": {
                        "origin": loser.origin,
                        "modified": loser.modified,
                        "content": dict(loser.fields),
                    },
                }
                self.conflict_log.append(entry)
                answer["conflicts"].append(entry)
            else:
                answer["unchanged"] += 1
        answer["generation"] = self.generation
        return answer


class MemoryReplica:
    """One open connection to a :class:`MemoryRepository` (the Replica interface)."""

    def __init__(self, repo: MemoryRepository, cluster: MemoryCluster) -> None:
        self.repo = repo
        self.display_url = repo.url
        self._cluster = cluster
        self.closed = False

    def _do(self, op: str, *args: Any) -> None:
        assert not self.closed, f"{op} on a closed replica"
        self.repo.call(op, *args)

    def replication_info(self) -> Dict[str, Any]:
        with self.repo.lock:
            self._do("replication_info")
            return self.repo.info()

    def require_extensions(self, info: Mapping[str, Any]) -> None:
        if EXTENSION not in (info.get("extensions") or []):
            raise MissingExtensions("this server lacks the extensions", self.display_url)

    def update_node(self, name: str, **fields: Any) -> Optional[int]:
        with self.repo.lock:
            self._do("update_node", name, fields)
            return self.repo.update_node(name, **fields)

    def reset_node(self, name: str) -> None:
        with self.repo.lock:
            self._do("reset_node", name)
            row = self.repo.nodes.get(name)
            if row is None:
                raise NotFound(404, f"Node {name} does not exist", url=self.display_url)
            row["lastSyncGen"] = row["syncId"] = None

    def renumber_own_jobs(
        self, name: str, peer: str, job_id_start: int, job_id_block: int, *, dry_run: bool = False
    ) -> List[Dict[str, Any]]:
        with self.repo.lock:
            self._do("renumber_own_jobs", name, peer, job_id_start, job_id_block, dry_run)
            assert name == self.repo.name, f"renumber for {name} sent to {self.repo.name}"
            return self.repo.renumber(job_id_start, job_id_block, dry_run)

    def export(self, since_gen: int, exclude_via: Optional[str] = None) -> Any:
        with self.repo.lock:
            self._do("export", since_gen, exclude_via)
            answer = self.repo.export(since_gen, exclude_via)
        hook = self.repo.hooks.get("export")
        if hook:
            hook()
        return answer

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        with self.repo.lock:
            self._do("count_changes", since_gen, exclude_via)
            return len(self.repo.selected(since_gen, exclude_via))

    def count_window(self, since_gen: int, exclude_via: Optional[str] = None) -> Tuple[int, int]:
        with self.repo.lock:
            self._do("count_window", since_gen, exclude_via)
            return len(self.repo.selected(since_gen, exclude_via)), self.repo.generation

    def download(self, jxl_url: str, dest: Any) -> int:
        with self.repo.lock:
            self._do("download", jxl_url)
            data = self.repo.take_export(jxl_url)
        dest.write(data)
        return len(data)

    def import_document(
        self,
        path: str,
        merge: bool = True,
        *,
        gzip: bool = False,
        peer: Optional[str] = None,
        peer_seq: Optional[int] = None,
    ) -> Dict[str, Any]:
        assert merge, "the sync only merges"
        assert (peer is None) == (peer_seq is None), "peer and peer_seq go together"
        with self.repo.lock:
            self._do("import_document")
            row = self.repo.nodes.get(peer) if peer is not None else None
            if peer is not None and row is None:
                raise BadRequest(
                    400, f"Unknown peer: no node row of {peer}", ["peer"], self.display_url
                )
            answer = self.repo.merge(path)
            if row is not None:  # with the import, as one change
                row["peerSeq"] = max(row.get("peerSeq") or 0, peer_seq or 0)
        hook = self.repo.hooks.get("import_document")
        if hook:
            hook()
        return answer

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]:
        with self.repo.lock:
            self._do("conflicts")
            return list(self.repo.conflict_log)

    def close(self) -> None:
        self.closed = True
        self._cluster.closed += 1


class MemoryCluster:
    """Repositories by URL, and the replica factory over them (``cluster(url)``)."""

    def __init__(self, *names: str, extensions: bool = True) -> None:
        self.repos: Dict[str, MemoryRepository] = {}
        for name in names:
            self.add(name, extensions=extensions)
        self.opened = 0
        self.closed = 0
        self.down: set = set()  # names whose server does not answer

    def add(self, name: str, extensions: bool = True) -> MemoryRepository:
        repo = MemoryRepository(name, extensions=extensions)
        self.repos[name] = repo
        return repo

    def __getitem__(self, name: str) -> MemoryRepository:
        return self.repos[name]

    def __call__(self, url: str) -> MemoryReplica:
        for repo in self.repos.values():
            if repo.url.lower() == url.rstrip("/").lower() and repo.name not in self.down:
                self.opened += 1
                return MemoryReplica(repo, self)
        raise ConnectionFailed("could not connect: Connection refused", url)

    def table(self, *names: str, typed: Optional[Dict[str, str]] = None) -> str:
        """The child value table of *names* (spelled as *typed* says, if given)."""
        rows = []
        for name in names:
            shown = (typed or {}).get(name, name)
            rows.append(f"{shown} true {url_of(name)} ''")
        return ";".join(rows)
