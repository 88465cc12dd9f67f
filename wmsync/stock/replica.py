"""The stock replica: a repository on a server without the replication extensions,
seen by the engine like any other (docs/design.md §10).

:class:`StockReplicas` is the builder the replica factory calls for such a server
(``builder(url, client, info)``); it holds what one run shares per repository: the
shadow repository, the scan (made once per run, by whichever replica needs it first)
and the warnings already given. Each :class:`StockReplica` is used by one thread and
closed; several replicas of one repository (the parent's) may work at once, so every
scan, import and write pass of a repository runs under that repository's lock, and
one run at a time uses a stock repository (:class:`~wmsync.stock.state.RepositoryLock`,
released by :meth:`StockReplicas.close`).

**The repository name of a stock server.** A stock server does not report one. It is
the name the caller gives for its URL (``names``: the table row's name, or the parent
name), else the service name in the URL path (``.../services/<name>/WMServer``). The
engine then checks a row's name against it as for any server, so a row that names a
stock server differently from its service is refused with both names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple, Union

from wmsync.client import WMServerClient
from wmsync.errors import NotFound, RepositoryError, ServerError
from wmsync.exchange.leftout import LeftOut
from wmsync.repository.store import Store

from . import fold, state
from .scan import Config, scan
from .state import JobClaims, RepositoryLock, StateStore
from .writer import WriteOutcome, Writer

log = logging.getLogger(__name__)

_SERVICE = re.compile(r"/services/(?:[^/]+/)*?([^/]+)/wmserver/?$", re.IGNORECASE)


def service_name(url: str) -> str:
    """The service name in a WMServer URL (``.../services/<name>/WMServer``)."""
    match = _SERVICE.search(url.split("?", 1)[0].rstrip("/"))
    if not match:
        raise RepositoryError(
            "cannot tell the repository name of a stock server from its URL (expected "
            ".../services/<name>/WMServer); give the name with the URL",
            url,
        )
    return match.group(1)


@dataclass(frozen=True)
class StockExport:
    """What :meth:`StockReplica.export` answers (the fields the engine reads)."""

    jxl_url: str
    generation: int
    export_time: int
    count: int
    skipped: Tuple[LeftOut, ...] = ()  # elements that cannot travel, left out


class _Repository:
    """What one run shares about one stock repository."""

    def __init__(self, name: str, store: Store, workdir: Path, registry: StateStore) -> None:
        self.name = name
        self.store = store
        self.registry = registry  # the job ids the state store's repositories claimed
        self.workdir = workdir
        self.lock = threading.RLock()
        self.scanned = False
        self.first = False
        self.config = Config()
        self.given: set[str] = set()  # warnings already given this run
        self.ids_kept_told = False  # logged once: its own jobs keep their ids at joining
        self.pending: List[str] = []  # warnings not yet handed to the engine
        self.conflicts: List[Dict[str, Any]] = []  # found by this run's scan

    def ensure_scanned(self, client: WMServerClient, *, write: bool = True) -> None:
        """Scan the server once per run and fold it into the shadow; then (unless only
        counting, which writes nothing to the server) retry what waits to be written."""
        with self.lock:
            if self.scanned:
                return
            snapshot = scan(client)
            mark = self.store.generation()
            try:
                # One fold at a time per state store: an id's first claim names its job.
                with self.registry.fold_lock:
                    claims = self.registry.claims_for(snapshot.jobs)
                    with self.store.atomic() as session:
                        self.first = state.meta(session.conn, "scanned") is None
                        signs = fold.fold(session, snapshot, self.first, claims)
                    self.registry.save_claims(claims)
            finally:
                snapshot.close()
            if signs:
                self._warn(
                    f"{self.name} went back in time (restored from a backup?): "
                    f"{'; '.join(signs)}. The cluster's versions are written back to it; "
                    "what it held instead is in the conflict log"
                )
            # Users' edits over versions not yet written there (decided by the rule).
            self.conflicts = [
                dict(c, repository=self.name) for c in self.store.conflicts(since_gen=mark)
            ]
            self.config = snapshot.config
            self.scanned = True
            if write:
                self.take(self.write(client))

    def write(self, client: WMServerClient) -> WriteOutcome:
        writer = Writer(self.store, client, self.config, self.first, JobClaims())
        try:
            return writer.run()
        finally:
            self.registry.save_claims(writer.claims)

    def take(self, outcome: WriteOutcome) -> None:
        for warning in outcome.warnings(self.name):
            self._warn(warning)

    def _warn(self, warning: str) -> None:
        if warning not in self.given:
            self.given.add(warning)
            self.pending.append(warning)
            log.info("%s", warning)  # the run reports it (engine)

    def handed(self) -> List[str]:
        out, self.pending = self.pending, []
        return out


class StockReplica:
    """One stock repository as the engine sees it (same methods as the extension
    client's), on top of the shadow repository and Esri's documented operations."""

    def __init__(self, repo: _Repository, client: WMServerClient) -> None:
        self._repo = repo
        self._client = client
        self.display_url = client.display_url
        self.name = repo.name

    # -- replication state (the shadow's) ----------------------------------------

    def replication_info(self) -> Dict[str, Any]:
        store = self._repo.store
        return {
            "nodes": [node.to_dict() for node in store.nodes()],
            "repository": self.name,
            "generation": store.generation(),
            "stock": True,
        }

    def require_extensions(self, info: Mapping[str, Any]) -> None:
        """Nothing to check: the state store stands in for the extensions."""

    def renumber_own_jobs(
        self, name: str, peer: str, job_id_start: int, job_id_block: int, *, dry_run: bool = False
    ) -> List[Dict[str, Any]]:
        """Nothing: Esri's documented operations cannot change a job's id, so a stock
        server's own jobs keep their ids when it joins; one that another repository
        already uses is given the next free id there when it arrives (docs/stock.md)."""
        with self._repo.lock:
            told, self._repo.ids_kept_told = self._repo.ids_kept_told, True
        if not told:
            log.info(
                "%s: a stock server's own jobs keep their ids when it joins %s (no documented "
                "operation changes a job id); a job whose id is taken elsewhere gets the next "
                "free id there",
                self.name,
                peer,
            )
        return []

    def update_node(
        self,
        name: str,
        *,
        server_url: Optional[str] = None,
        is_parent: Optional[bool] = None,
        is_connected: Optional[bool] = None,
        last_sync_gen: Optional[int] = None,
        sync_id: Optional[str] = None,
        stamp_last_sync: bool = False,
        job_id_start: Optional[int] = None,
        job_id_block: Optional[int] = None,
        sync_seq: Optional[int] = None,  # restore detection: extension servers only
        peer_seq: Optional[int] = None,
        peer_instance: Optional[str] = None,
        peer_gen_seen: Optional[int] = None,
        peer_gen: Optional[int] = None,
        peer_counter_seen: Optional[str] = None,
    ) -> Optional[int]:
        node = self._repo.store.update_node(
            name,
            server_url=server_url,
            is_parent=is_parent,
            is_connected=is_connected,
            last_sync_gen=last_sync_gen,
            sync_id=sync_id,
            stamp_last_sync=stamp_last_sync,
            job_id_start=job_id_start,
            job_id_block=job_id_block,
            peer_gen=peer_gen,
        )
        if job_id_start is not None and name.lower() == self.name.lower():
            self._apply_block(job_id_start)
        return node.last_sync

    def _apply_block(self, start: int) -> None:
        """New jobs on the server should be numbered from *start* (its block):
        ``updateConfigProperties`` ``JOB_ID_START_VALUE`` where the run's user may."""
        store = self._repo.store
        with state.transaction(store) as conn:
            done = state.meta(conn, "jobIdStart")
        if start <= 1 or done == str(start):
            return
        try:
            self._client.post(
                "updateConfigProperties",
                properties=json.dumps({"JOB_ID_START_VALUE": str(start)}),
                JOB_ID_START_VALUE=start,
            )
        except (ServerError, RepositoryError) as exc:
            warning = (
                f"{self.name}: new jobs could not be set to start at id {start} "
                f"(updateConfigProperties JOB_ID_START_VALUE: {exc}); ask an administrator "
                "to set it in Workflow Manager Administrator, or jobs created there may "
                "take ids another repository uses"
            )
            with self._repo.lock:
                if warning not in self._repo.given:
                    self._repo.given.add(warning)
                    self._repo.pending.append(warning)
            log.info("%s", warning)  # the run reports it (engine)
            return
        with state.transaction(store) as conn:
            state.set_meta(conn, "jobIdStart", str(start))

    def reset_node(self, name: str) -> None:
        self._repo.store.reset_node(name)

    # -- Esri's jobs API, for tools that edit jobs as a user would (conflicts --restore):
    # the next scan finds those edits and they travel like any user's edit.

    def get(self, path: str, **params: Any) -> Dict[str, Any]:
        return self._client.get(path, **params)

    def post(self, path: str, **params: Any) -> Dict[str, Any]:
        return self._client.post(path, **params)

    def delete_node(self, name: str) -> None:
        """Remove the node row *name* from the state store (Clear Job Replication
        Information): a stock server keeps no rows of ours, so its shadow holds them.
        Jobs stay; the repository keeps its id block setting on the server."""
        if not self._repo.store.delete_node(name):
            raise NotFound(404, f"Node {name} does not exist", url=self.display_url)

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]:
        return self._repo.store.conflicts(since_gen)

    # -- export and import ---------------------------------------------------------

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        """What an export would hold (for plans): scans, writes nothing to the server."""
        self._repo.ensure_scanned(self._client, write=False)
        with self._repo.store.reading() as session:
            return sum(1 for _ in session.elements_since(since_gen, exclude_via))

    def export(self, since_gen: int, exclude_via: Optional[str] = None) -> StockExport:
        self._repo.ensure_scanned(self._client)
        info = self._repo.store.export(self._repo.workdir, since_gen, exclude_via)
        return StockExport(
            str(info.path),
            info.generation,
            info.export_time,
            info.count,
            tuple(info.skipped),
        )

    def download(self, jxl_url: str, dest: BinaryIO) -> int:
        path = Path(jxl_url)
        if path.parent.resolve() != self._repo.workdir.resolve():
            raise RepositoryError(f"not an export of this run: {jxl_url}", self.display_url)
        with open(path, "rb") as source:
            written = 0
            while True:
                chunk = source.read(1 << 16)
                if not chunk:
                    break
                dest.write(chunk)
                written += len(chunk)
        path.unlink()
        return written

    def import_document(
        self,
        path: Union[str, os.PathLike[str]],
        merge: bool = True,
        *,
        gzip: bool = False,
        peer: Optional[str] = None,
        peer_seq: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Merge into the shadow, then write what changed to the server. *peer* and
        *peer_seq* are recorded in the shadow's node row in the shadow's import
        transaction (the engine sends them only to servers reporting an instance id)."""
        if not merge:
            raise RepositoryError(
                "a stock repository is never replaced (merge=false)", self.display_url
            )
        repo = self._repo
        with repo.lock:
            repo.ensure_scanned(self._client)
            # The exchange readers take gzip as it is (wmsync.exchange.source), so a
            # packed upload is imported without unpacking it to a file first.
            result = repo.store.import_file(os.fspath(path), peer=peer, peer_seq=peer_seq)
            outcome = repo.write(self._client)
            repo.take(outcome)
            answer = result.to_dict()
            answer["written"] = outcome.written
            answer["renumbered"] = list(answer.get("renumbered") or []) + outcome.renumbered
            answer["warnings"] = list(answer.get("warnings") or []) + repo.handed()
        if outcome.failures:
            raise RepositoryError(
                f"{self.name}: {len(outcome.failures)} job(s) could not be written to the "
                f"server (retried next run): {outcome.failures[0]}",
                self.display_url,
            )
        return answer

    def close(self) -> None:
        self._client.close()


class StockReplicas:
    """The builder of stock replicas for one run: ``builder(url, client, info)``.

    :param state_path: the state store (default :func:`default_state_path`).
    :param names: repository names by URL (the table row's name, the parent name);
        without one, the service name in the URL.
    """

    def __init__(
        self,
        state_path: Union[str, os.PathLike[str], None] = None,
        *,
        names: Optional[Mapping[str, str]] = None,
        lock_timeout: float = 300.0,
    ) -> None:
        self._state_path = state_path
        self._state: Optional[StateStore] = None  # opened when a stock server is met
        self.lock_timeout = lock_timeout
        self._locks: List[RepositoryLock] = []
        self._closed = False
        self._names = {_url_key(url): name for url, name in (names or {}).items()}
        self._repos: Dict[str, _Repository] = {}
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        # Export files of this run; removed by close(), or when the builder is collected.
        self._tmp = tempfile.TemporaryDirectory(prefix="wmsync-stock-")
        self._workdir = Path(self._tmp.name)

    @property
    def state(self) -> StateStore:
        """The state store, opened (and its folder made) on first use: a run whose
        servers all have the extensions leaves no state file behind."""
        with self._state_lock:
            if self._state is None:
                try:
                    self._state = StateStore(self._state_path)
                except (OSError, sqlite3.Error) as exc:
                    raise RepositoryError(
                        f"the state store of stock servers cannot be opened at "
                        f"{self._state_path or state.default_state_path()}: {exc}"
                    ) from None
            return self._state

    def add_names(self, names: Mapping[str, str]) -> None:
        """Learn repository names by URL (a name already known for a URL is kept)."""
        with self._lock:
            for url, name in names.items():
                if name:
                    self._names.setdefault(_url_key(url), name)

    def name_for(self, url: str) -> str:
        """The repository name for *url*: the one the run was told, else the one the
        state store registered for the URL, else the service name in the URL."""
        known = self._names.get(_url_key(url))
        return known or self.state.name_for_url(url) or service_name(url)

    def __call__(
        self, url: str, client: WMServerClient, info: Any = None, *, name: Optional[str] = None
    ) -> StockReplica:
        """A replica of the stock repository at *url* (*name*: its name, when the caller
        knows it from the table row or the parent name; else :meth:`name_for`)."""
        if name:
            with self._lock:
                self._names.setdefault(_url_key(url), name)
        name = self.name_for(url)
        with self._lock:
            if self._closed:
                raise RepositoryError("this run's stock replicas are closed", url)
            repo = self._repos.get(name.lower())
            if repo is None:
                store = self.state.shadow(name, url.rstrip("/"))
                try:
                    lock = RepositoryLock(
                        store.path.with_name(store.path.name + ".lock"), self.lock_timeout
                    )
                except sqlite3.OperationalError:
                    raise RepositoryError(
                        f"{store.repository}: another run is synchronizing this stock "
                        f"repository (state store {self.state.path}); try again when it "
                        "has finished",
                        url,
                    ) from None
                self._locks.append(lock)
                folder = self._workdir / str(len(self._repos))
                folder.mkdir()
                repo = _Repository(store.repository, store, folder, self.state)
                self._repos[name.lower()] = repo
        return StockReplica(repo, client)

    def warnings(self) -> List[str]:
        """Every warning the run gave about stock repositories (missing configuration,
        refused id blocks, renumbered jobs)."""
        with self._lock:
            return [w for repo in self._repos.values() for w in sorted(repo.given)]

    def conflicts(self) -> List[Dict[str, Any]]:
        """Conflicts this run's scans found (an edit made on a stock server over a
        version not yet written there), in the shape of an import answer's conflicts plus
        ``repository``. Import answers carry the conflicts of imports; these come from no
        import, so the caller adds them to the run's report."""
        with self._lock:
            return [c for repo in self._repos.values() for c in repo.conflicts]

    def close(self) -> None:
        """End the run: release the repositories' locks, remove export files."""
        with self._lock:
            for lock in self._locks:
                lock.release()
            self._locks = []
            self._closed = True
        self._tmp.cleanup()


def _url_key(url: str) -> str:
    return url.rstrip("/").lower()
