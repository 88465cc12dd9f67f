"""The synchronization algorithm (DESIGN.md section 4).

A run reads the parent, prepares every connected child (checks, registration, whether
its watermarks can be trusted), pulls every child's changes into the parent, then pushes
the parent's changes to every reachable child. Watermarks are server-side generations
stored in both repositories' node tables; a direction's watermark advances only once its
import has committed, so a failure anywhere just makes the next run redo that window.

The engine talks to servers only through a client (``client_factory(url)``), never
prints and never touches arcpy: it reports through a :class:`SyncListener`, and only from
the calling thread. Children are worked on in a bounded thread pool.
"""

from __future__ import annotations

import getpass
import logging
import os
import queue
import secrets
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple

from . import exchange
from .auth import TokenLike, as_token_source
from .errors import (
    Cancelled,
    ProtocolError,
    RepositoryError,
    SyncRefused,
    ValueTableError,
    WMSyncError,
    redact_url,
)
from .progress import SyncListener
from .report import FAILED, SKIPPED, SYNCHRONIZED, ChildResult, PlanEntry, PlanResult, SyncResult
from .valuetable import ChildSpec, parse_children

log = logging.getLogger(__name__)

JOB_ID_BLOCK = 1_000_000  # ids each repository numbers its new jobs from (DESIGN §4)
CLAIM_ATTEMPTS = 5  # writes of a new child's block before giving up (concurrent first runs)
#: Exchange documents are uploaded gzip-compressed (``Content-Encoding: gzip``, which
#: the protocol's raw-body import accepts) at this zlib level; 0 uploads them as they
#: are. Level 1 makes them about 9x smaller for about 7 ms of CPU per MB: on loopback
#: the run's wall time stays within the noise (0-10 % more on 2 cores), on a real
#: network the bytes it saves dominate (docs/performance.md, "What was optimized").
UPLOAD_GZIP_LEVEL = 1


class RepositoryClient(Protocol):
    """What the engine needs from a WMServer client (wmsync.client.WMServerClient)."""

    display_url: str

    def replication_info(self) -> Dict[str, Any]: ...

    def require_extensions(self, info: Mapping[str, Any]) -> None: ...

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
    ) -> Optional[int]: ...

    def reset_node(self, name: str) -> None: ...

    def export(self, since_gen: int, exclude_via: Optional[str] = None) -> Any: ...

    def download(self, jxl_url: str, dest: Any) -> int: ...

    def import_document(
        self, path: str, merge: bool = True, *, gzip: bool = False
    ) -> Dict[str, Any]: ...

    def close(self) -> None: ...


ClientFactory = Callable[[str], RepositoryClient]


def default_client_factory(
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    timeout: float = 60.0,
    verify: Any = True,
) -> ClientFactory:
    """A factory of real HTTP clients, all acting as *user* with *token*."""
    from .client import WMServerClient

    acting_user = user or getpass.getuser()
    # One source for every client: a token function is called once, and a refresh after
    # a 498 serves all of them, not only the client that saw it.
    source = as_token_source(token)

    def make(url: str) -> RepositoryClient:
        return WMServerClient(url, user=acting_user, token=source, timeout=timeout, verify=verify)

    return make


def _overlaps(node: Mapping[str, Any], start: int) -> bool:
    other = _int_or_none(node.get("jobIdStart"))
    if other is None:
        return False
    size = _int_or_none(node.get("jobIdBlock")) or JOB_ID_BLOCK
    return other < start + JOB_ID_BLOCK and start < other + size


def claim_block(parent: RepositoryClient, name: str, url: str, block: int) -> int:
    """Write *name*'s job id block on the parent, read it back, and return the block.

    Another run registering another child at the same moment may have picked the same
    block from the same parent state. So after each write the parent is read again, and
    if any other row overlaps the block, this run moves to a fresh one and checks again.
    A block is kept only when a read made after its write shows no overlap; two runs
    cannot both keep one, as each would have had to read before the other wrote. Runs
    that collide together move apart by their names' order among the colliding rows.
    """
    for _ in range(CLAIM_ATTEMPTS):
        parent.update_node(
            name, server_url=url, is_parent=False, is_connected=True,
            job_id_start=block, job_id_block=JOB_ID_BLOCK,
        )
        nodes = [n for n in parent.replication_info().get("nodes") or []
                 if isinstance(n, Mapping)]
        others = [n for n in nodes if str(n.get("name", "")).lower() != name.lower()]
        colliding = [str(n.get("name", "")).lower() for n in others if _overlaps(n, block)]
        if not colliding:
            return block
        ends = [start + (_int_or_none(n.get("jobIdBlock")) or JOB_ID_BLOCK)
                for n in nodes if (start := _int_or_none(n.get("jobIdStart"))) is not None]
        rank = sorted([*colliding, name.lower()]).index(name.lower())
        block = max(ends) + rank * JOB_ID_BLOCK
    raise SyncRefused(
        f"{name}: no free job id block could be claimed on the parent; other runs kept "
        f"taking the same ones. Run again."
    )


# ---------------------------------------------------------------------------
# Per-child state


@dataclass
class _Pair:
    """Replication state of one (parent, child) pair, as read at the start of the run."""

    spec: ChildSpec
    result: ChildResult
    trusted: bool = False  # both watermarks usable: incremental exchange with echo cut
    child_mark: int = 0  # child's generation up to which its changes are in the parent
    parent_mark: int = 0  # parent's generation up to which its changes are in the child
    server_last_sync: Optional[int] = None
    sync_id: str = field(default_factory=lambda: secrets.token_hex(8))
    ready: bool = False  # prepared: registered and reachable
    pulled: bool = False


def _node(info: Mapping[str, Any], name: str) -> Optional[Mapping[str, Any]]:
    for node in info.get("nodes") or []:
        if isinstance(node, Mapping) and str(node.get("name", "")).lower() == name.lower():
            return node
    return None


def _int_or_none(value: Any) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def watermarks(
    parent_row: Optional[Mapping[str, Any]],
    child_row: Optional[Mapping[str, Any]],
    full: bool,
) -> Tuple[bool, int, int]:
    """Whether a pair's watermarks can be trusted, and the parent's and child's marks.

    Matching sync ids in both node rows prove both come from the same runs (no restore
    from backup, no re-added child); a mark not yet written (its direction failed) is
    then 0, not a reason to redo the other direction in full. Untrusted: (False, 0, 0).
    """
    if full or parent_row is None or child_row is None:
        return False, 0, 0
    sync_id = parent_row.get("syncId")
    if not sync_id or sync_id != child_row.get("syncId"):
        return False, 0, 0
    return (
        True,
        _int_or_none(parent_row.get("lastSyncGen")) or 0,
        _int_or_none(child_row.get("lastSyncGen")) or 0,
    )


def read_child(
    child: RepositoryClient, spec: ChildSpec, parent_name: str, parent_url: str
) -> Dict[str, Any]:
    """A child's replication info, once it is known to be the repository its row names,
    with the extensions, and not the parent itself.

    :raises SyncRefused: the row points at the parent or at another repository.
    """
    name, url = spec.name, spec.url.rstrip("/")
    if name.lower() == parent_name.lower() or _same_url(url, parent_url):
        raise SyncRefused(f"{name} is the parent repository itself")
    info = child.replication_info()
    child.require_extensions(info)
    actual = str(info.get("repository") or "")
    if actual.lower() != name.lower():
        raise SyncRefused(
            f"the server at {redact_url(url)} is the repository {actual!r}, not {name!r}"
        )
    return info


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


# ---------------------------------------------------------------------------
# Events from worker threads to the calling thread


class _Events:
    """Queue of listener calls made by workers, replayed on the calling thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Tuple[str, str]] = queue.Queue()
        self.cancel = threading.Event()

    def put(self, kind: str, text: str = "") -> None:
        self._queue.put((kind, text))

    def drain(self, listener: SyncListener) -> None:
        while True:
            try:
                kind, text = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "info":
                listener.info(text)
            elif kind == "warning":
                listener.warning(text)
            elif kind == "step":
                listener.step(text)
            elif kind == "step_done":
                listener.step_done()

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled before this step")


def _run_all(
    tasks: List[Callable[[], None]],
    events: _Events,
    listener: SyncListener,
    max_workers: int,
) -> None:
    """Run *tasks* in a bounded pool; relay events and cancellation on this thread."""
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(tasks)))) as pool:
        pending: set[Future[None]] = {pool.submit(task) for task in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            events.drain(listener)
            if not events.cancel.is_set() and listener.cancelled():
                events.cancel.set()
            for future in done:
                future.result()  # tasks catch their own errors; this re-raises bugs
    events.drain(listener)


# ---------------------------------------------------------------------------
# The run


class _Run:
    """One synchronization run; holds what the phases share."""

    def __init__(
        self,
        parent_url: str,
        parent_name: str,
        specs: List[ChildSpec],
        factory: ClientFactory,
        listener: SyncListener,
        full: bool,
        max_workers: int,
        workdir: str,
    ) -> None:
        self.parent_url = parent_url.rstrip("/")
        self.parent_name = parent_name
        self.factory = factory
        self.listener = listener
        self.full = full
        self.max_workers = max_workers
        self.workdir = workdir
        self.events = _Events()
        self.parent_import_lock = threading.Lock()  # the parent imports one at a time
        self.conflicts: List[Dict[str, Any]] = []
        self._conflict_lock = threading.Lock()
        self.pairs = [_Pair(spec, ChildResult(spec)) for spec in specs]

    # -- parent ----------------------------------------------------------------

    def read_parent(self) -> Dict[str, Any]:
        """Check the parent answers, has the extensions and carries the expected name."""
        client = self.factory(self.parent_url)
        try:
            info = client.replication_info()
            client.require_extensions(info)
        finally:
            client.close()
        actual = str(info.get("repository") or "")
        if actual.lower() != self.parent_name.lower():
            raise SyncRefused(
                f"the parent at {redact_url(self.parent_url)} is the repository "
                f"{actual!r}, not {self.parent_name!r}"
            )
        return info

    def register_parent(self, info: Mapping[str, Any]) -> Dict[str, Any]:
        """Make sure the parent has its own node row with a job id block."""
        own = _node(info, self.parent_name)
        if own is None or _int_or_none(own.get("jobIdStart")) is None:
            client = self.factory(self.parent_url)
            try:
                client.update_node(
                    self.parent_name,
                    server_url=self.parent_url,
                    is_parent=True,
                    is_connected=True,
                    job_id_start=1,
                    job_id_block=JOB_ID_BLOCK,
                )
                info = client.replication_info()
            finally:
                client.close()
        return dict(info)

    def allocate_blocks(self, parent_info: Mapping[str, Any]) -> Dict[str, int]:
        """Give every child that has none on the parent a disjoint job id block."""
        ends = [1 + JOB_ID_BLOCK]
        for node in parent_info.get("nodes") or []:
            start = _int_or_none(node.get("jobIdStart"))
            size = _int_or_none(node.get("jobIdBlock")) or JOB_ID_BLOCK
            if start is not None:
                ends.append(start + size)
        next_start = max(ends)
        blocks: Dict[str, int] = {}
        for pair in self.pairs:
            node = _node(parent_info, pair.spec.name)
            start = _int_or_none(node.get("jobIdStart")) if node else None
            if start is None:
                start = next_start
                next_start += JOB_ID_BLOCK
            blocks[pair.spec.name] = start
        return blocks

    # -- preparation -------------------------------------------------------------

    def prepare(
        self,
        pair: _Pair,
        child: RepositoryClient,
        parent: RepositoryClient,
        parent_info: Mapping[str, Any],
        block: int,
    ) -> None:
        """Check one child and register the pair; decide whether watermarks are trusted."""
        name, url = pair.spec.name, pair.spec.url.rstrip("/")
        info = read_child(child, pair.spec, self.parent_name, self.parent_url)
        p_row = _node(parent_info, name)
        c_row = _node(info, self.parent_name)
        pair.server_last_sync = _int_or_none(p_row.get("lastSync")) if p_row else None
        pair.trusted, pair.parent_mark, pair.child_mark = watermarks(p_row, c_row, self.full)
        if not pair.trusted:
            # A full exchange both ways; forget stale watermarks so they can restart.
            if p_row is not None:
                parent.reset_node(name)
            if c_row is not None:
                child.reset_node(self.parent_name)
        own = _node(info, name)
        handed = own is not None and _int_or_none(own.get("jobIdStart")) == block
        if p_row is None or _int_or_none(p_row.get("jobIdStart")) is None or not handed:
            # Not yet in the child's hands: (re)check it against concurrent first runs.
            block = claim_block(parent, name, url, block)
        if c_row is None:
            child.update_node(
                self.parent_name, server_url=self.parent_url, is_parent=True,
                is_connected=True,
            )
        if own is None or _int_or_none(own.get("jobIdStart")) != block:
            child.update_node(
                name, server_url=url, is_parent=False, is_connected=True,
                job_id_start=block, job_id_block=JOB_ID_BLOCK,
            )
        pair.result.full_exchange = not pair.trusted
        pair.ready = True

    # -- the two directions ----------------------------------------------------------

    def transfer(
        self,
        source: RepositoryClient,
        target: RepositoryClient,
        since_gen: int,
        exclude_via: Optional[str],
        label: str,
        import_lock: Optional[threading.Lock] = None,
    ) -> Tuple[int, int, Dict[str, Any]]:
        """Export from *source*, validate, import into *target*.

        Only the import holds *import_lock*: the exports, downloads and validations of
        several children still overlap.

        :returns: (elements moved, generation the export covered, import answer).
        """
        self.events.check_cancel()
        info = source.export(since_gen, exclude_via)
        count = int(getattr(info, "count", 0))
        generation = int(info.generation)
        if count == 0:
            return 0, generation, {}
        fd, path = tempfile.mkstemp(suffix=".jxl", dir=self.workdir)
        try:
            with os.fdopen(fd, "wb") as handle:
                source.download(info.jxl_url, handle)
            header, count = exchange.validate_file(path)
            if header.generation != generation:
                raise ProtocolError(
                    f"{label}: export document covers generation {header.generation}, "
                    f"the server announced {generation}",
                    source.display_url,
                )
            if count == 0:
                return 0, generation, {}
            upload, packed = path, False
            if UPLOAD_GZIP_LEVEL:
                upload, packed = path + ".gz", True
                exchange.gzip_file(path, upload, compresslevel=UPLOAD_GZIP_LEVEL)
            self.events.check_cancel()
            if import_lock is None:
                answer = target.import_document(upload, merge=True, gzip=packed)
            else:
                with import_lock:
                    answer = target.import_document(upload, merge=True, gzip=packed)
        finally:
            os.unlink(path)
            if os.path.exists(path + ".gz"):
                os.unlink(path + ".gz")
        return count, generation, answer

    def record(self, pair: _Pair, answer: Mapping[str, Any], repository: str) -> None:
        """Add an import's conflicts and renumbered jobs to the child's result."""
        conflicts = answer.get("conflicts") or []
        pair.result.conflicts += len(conflicts)
        pair.result.renumbered += len(answer.get("renumbered") or [])
        with self._conflict_lock:
            self.conflicts.extend(_conflict_entry(c, repository) for c in conflicts)
        for warning in answer.get("warnings") or []:
            self.events.put("warning", f"{repository}: {warning}")

    def guarded(
        self,
        pair: _Pair,
        doing: str,
        work: Callable[[RepositoryClient, RepositoryClient], None],
        label: Optional[str] = None,
    ) -> None:
        """Run one child's *work* with its own clients (child, parent); any failure fails
        that child alone. With a *label*, the work is one progress step."""
        if label:
            self.events.put("step", label)
        with ExitStack() as clients:
            try:
                child = self.factory(pair.spec.url)
                clients.callback(child.close)
                parent = self.factory(self.parent_url)
                clients.callback(parent.close)
                work(child, parent)
            except WMSyncError as exc:
                self.fail(pair, doing, exc)
            except Exception as exc:  # a bug must not stop the other children
                log.exception("unexpected error with %s while %s", pair.spec.name, doing)
                self.fail(pair, doing, exc)
        if label:
            self.events.put("step_done")

    def pull(self, pair: _Pair) -> None:
        """The child's changes since its watermark go to the parent."""

        def work(child: RepositoryClient, parent: RepositoryClient) -> None:
            via = self.parent_name if pair.trusted else None
            sent, generation, answer = self.transfer(
                child, parent, pair.child_mark, via, pair.spec.name, self.parent_import_lock
            )
            self.record(pair, answer, self.parent_name)
            # Commit: the child's watermark is the generation the export covered, never the
            # child's generation after the push (that would skip edits made during the run).
            child.update_node(self.parent_name, last_sync_gen=generation, sync_id=pair.sync_id)
            parent.update_node(pair.spec.name, sync_id=pair.sync_id)
            pair.result.sent = sent
            pair.pulled = True

        self.guarded(pair, "sending its changes to the parent", work,
                     f"{pair.spec.name}: sending changes to the parent")

    def push(self, pair: _Pair) -> None:
        """The parent's changes since the pair's watermark go to the child."""
        name = pair.spec.name

        def work(child: RepositoryClient, parent: RepositoryClient) -> None:
            via = name if pair.trusted else None
            received, generation, answer = self.transfer(
                parent, child, pair.parent_mark, via, name
            )
            self.record(pair, answer, name)
            both = pair.pulled
            # Keep the old syncId when the pull failed: the pair stays trusted on the
            # child's old watermark instead of forcing a full exchange next time.
            stamped = parent.update_node(
                name,
                last_sync_gen=generation,
                sync_id=pair.sync_id if both else None,
                stamp_last_sync=both,
            )
            pair.result.received = received
            if both:
                moment = stamped if stamped is not None else _now_ms()
                pair.result.last_sync = datetime.fromtimestamp(moment / 1000, timezone.utc)
                pair.result.state = SYNCHRONIZED
                pair.result.error = None
                self.events.put(
                    "info",
                    f"{name}: synchronized; sent {pair.result.sent}, received {received}, "
                    f"conflicts {pair.result.conflicts}"
                    + (" (full exchange)" if not pair.trusted else ""),
                )

        self.guarded(pair, "receiving the parent's changes", work,
                     f"{name}: receiving changes from the parent")

    def fail(self, pair: _Pair, doing: str, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, WMSyncError) else f"unexpected {type(exc).__name__}"
        message = f"{pair.spec.name} failed while {doing}: {text}"
        if pair.result.error is None:
            pair.result.error = message
        pair.result.state = FAILED
        self.events.put("warning", message)


def _conflict_entry(conflict: Any, repository: str) -> Dict[str, Any]:
    """A conflict of an import answer, as the report lists it: who won, whose version lost."""
    if not isinstance(conflict, Mapping):
        return {"repository": repository, "detail": str(conflict)}

    def side(key: str) -> Mapping[str, Any]:
        value = conflict.get(key)
        return value if isinstance(value, Mapping) else {}

    return {
        "repository": repository,
        "guid": conflict.get("guid"),
        "kind": conflict.get("kind"),
        "winner": side("winner").get("origin"),
        "winner_modified": side("winner").get("modified"),
        "loser_origin": side("loser").get("origin"),
        "loser_modified": side("loser").get("modified"),
        "reason": conflict.get("reason"),
    }


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _check_row_time(pair: _Pair) -> Optional[Tuple[str, str]]:
    """("info" or "warning", text) when the table's time disagrees with the time the
    parent recorded: only a row time LATER than the record (or a record missing) is a
    warning, as the table then claims a synchronization the servers never recorded;
    an older time is what a static table (Esri's sample) always holds."""
    row = pair.spec.last_sync
    if row is None:
        return None
    server = pair.server_last_sync
    name = pair.spec.name
    if server is None:
        return ("warning",
                f"row time ignored; {name} has no recorded synchronization: full exchange")
    recorded = datetime.fromtimestamp(server / 1000, timezone.utc)
    if abs((recorded - row).total_seconds()) > 60:
        local = recorded.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        level = "warning" if row > recorded else "info"
        return level, f"row time ignored; {name} last synchronized at {local}"
    return None


@dataclass
class _Inputs:
    specs: List[ChildSpec]
    connected: List[ChildSpec]


def _read_inputs(children: Any) -> _Inputs:
    specs = parse_children(children)
    return _Inputs(specs, [spec for spec in specs if spec.connected])


def _not_connected(spec: ChildSpec) -> str:
    return f"not connected (connected is {spec.connected_text!r})"


def _skipped(spec: ChildSpec) -> ChildResult:
    return ChildResult(spec, state=SKIPPED, error=_not_connected(spec))


def synchronize(
    parent_url: str,
    parent_name: str,
    children: Any,
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    client_factory: Optional[ClientFactory] = None,
    listener: Optional[SyncListener] = None,
    full: bool = False,
    max_workers: int = 4,
    timeout: float = 60.0,
    verify: Any = True,
) -> SyncResult:
    """Synchronize a cluster: every connected child to the parent, then back to all.

    :param parent_url: the parent's WMServer URL.
    :param parent_name: the parent repository's name (checked against the server).
    :param children: the child value table (text, list of rows or ValueTable-like).
    :param full: ignore watermarks and exchange everything (``wmsync sync --full``).
    :returns: a :class:`SyncResult`; per-child failures are in it, never raised.
    """
    listener = listener or SyncListener()
    started = datetime.now(timezone.utc)

    def done(status: int, results: List[ChildResult], error: Optional[str] = None,
             conflicts: Optional[List[Dict[str, Any]]] = None) -> SyncResult:
        return SyncResult(
            status=status, parent_name=parent_name, parent_url=parent_url, started=started,
            finished=datetime.now(timezone.utc), children=results,
            conflicts=conflicts or [], error=error,
        )

    try:
        inputs = _read_inputs(children)
    except ValueTableError as exc:
        return done(-1, [], f"the child table was refused, nothing changed: {exc}")
    for row_note in (n for spec in inputs.specs for n in spec.notes):
        (listener.warning if row_note.level == "warning" else listener.info)(row_note.text)
    skipped = {spec.row: _skipped(spec) for spec in inputs.specs if not spec.connected}
    for result in skipped.values():
        listener.warning(f"{result.name} skipped: {result.error}")
    if not inputs.connected:
        return done(-1, list(skipped.values()), "no connected child repository to synchronize")

    factory = client_factory or default_client_factory(
        user=user, token=token, timeout=timeout, verify=verify
    )
    with tempfile.TemporaryDirectory(prefix="wmsync-") as workdir:
        run = _Run(parent_url, parent_name, inputs.connected, factory, listener, full,
                   max_workers, workdir)
        results = _results_in_order(inputs.specs, skipped, run.pairs)
        try:
            parent_info = run.register_parent(run.read_parent())
        except (SyncRefused, RepositoryError) as exc:
            message = f"parent {parent_name}: {exc}"
            for pair in run.pairs:
                pair.result.error = "not attempted: the parent could not be used"
            return done(-1, results, message)

        blocks = run.allocate_blocks(parent_info)
        listener.begin(len(run.pairs) * 2, "Synchronizing job data")
        try:
            _run_all(
                [_prepare_task(run, pair, parent_info, blocks[pair.spec.name])
                 for pair in run.pairs],
                run.events, listener, max_workers,
            )
            for pair in run.pairs:
                note = _check_row_time(pair) if pair.ready else None
                if note:
                    (listener.warning if note[0] == "warning" else listener.info)(note[1])
            ready = [pair for pair in run.pairs if pair.ready]
            _run_all([_bind(run.pull, pair) for pair in ready], run.events, listener,
                     max_workers)
            _run_all([_bind(run.push, pair) for pair in ready], run.events, listener,
                     max_workers)
        finally:
            run.events.drain(listener)
        failed = sum(1 for pair in run.pairs if pair.result.state != SYNCHRONIZED)
        outcome = done(failed, results, None, run.conflicts)
        if run.events.cancel.is_set():
            outcome.cancelled = True
            listener.warning(
                "Cancelled: the run stopped at a safe point; nothing is half-applied, and "
                "children not synchronized keep their old Last Synchronized time"
            )
        return outcome


def _results_in_order(
    specs: List[ChildSpec], skipped: Mapping[int, ChildResult], pairs: List[_Pair]
) -> List[ChildResult]:
    by_row = {pair.spec.row: pair.result for pair in pairs}
    by_row.update(skipped)
    return [by_row[spec.row] for spec in specs]


def _bind(method: Callable[[_Pair], None], pair: _Pair) -> Callable[[], None]:
    return lambda: method(pair)


def _prepare_task(
    run: _Run, pair: _Pair, parent_info: Mapping[str, Any], block: int
) -> Callable[[], None]:
    def task() -> None:
        run.guarded(
            pair,
            "being checked and registered",
            lambda child, parent: run.prepare(pair, child, parent, parent_info, block),
        )
        if not pair.ready:  # its two steps will not run
            run.events.put("step_done")
            run.events.put("step_done")

    return task


def plan(
    parent_url: str,
    parent_name: str,
    children: Any,
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    client_factory: Optional[ClientFactory] = None,
    full: bool = False,
    timeout: float = 60.0,
    verify: Any = True,
) -> PlanResult:
    """Report per child what a run would move, changing nothing (``--dry-run``)."""
    try:
        inputs = _read_inputs(children)
    except ValueTableError as exc:
        return PlanResult(-1, parent_name, parent_url,
                          error=f"the child table was refused: {exc}")
    factory = client_factory or default_client_factory(
        user=user, token=token, timeout=timeout, verify=verify
    )
    entries = [PlanEntry(spec, error=_not_connected(spec)) for spec in inputs.specs]
    result = PlanResult(0, parent_name, parent_url, entries)
    parent = factory(parent_url)
    try:
        try:
            probe = _Run(parent_url, parent_name, [], factory, SyncListener(), full, 1, "")
            parent_info = probe.read_parent()
        except (SyncRefused, RepositoryError) as exc:
            result.status, result.error = -1, f"parent {parent_name}: {exc}"
            return result
        for entry in entries:
            if entry.spec.connected:
                _plan_child(entry, parent, parent_info, parent_name, factory, full)
    finally:
        parent.close()
    result.status = sum(1 for entry in entries if entry.state == FAILED)
    if not inputs.connected:
        result.status, result.error = -1, "no connected child repository to synchronize"
    return result


def _plan_child(
    entry: PlanEntry,
    parent: RepositoryClient,
    parent_info: Mapping[str, Any],
    parent_name: str,
    factory: ClientFactory,
    full: bool,
) -> None:
    name = entry.spec.name
    child = factory(entry.spec.url)
    try:
        info = read_child(child, entry.spec, parent_name, parent.display_url)
        p_row, c_row = _node(parent_info, name), _node(info, parent_name)
        trusted, p_mark, c_mark = watermarks(p_row, c_row, full)
        entry.full_exchange = not trusted
        entry.pull = int(child.export(c_mark, parent_name if trusted else None).count)
        entry.push_estimate = int(parent.export(p_mark, name if trusted else None).count)
        entry.state, entry.error = SYNCHRONIZED, None
    except WMSyncError as exc:
        entry.state, entry.error = FAILED, str(exc)
    finally:
        child.close()


__all__ = ["ClientFactory", "RepositoryClient", "SyncListener", "plan", "synchronize"]
