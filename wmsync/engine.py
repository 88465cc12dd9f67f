"""The synchronization algorithm (docs/design.md §4).

A run reads the parent, prepares every connected child (checks, registration, whether
its watermarks can be trusted), pulls every child's changes into the parent, then pushes
the parent's changes to every reachable child. Watermarks are server-side generations
stored in both repositories' node tables; a direction's watermark advances only once its
import has committed, so a failure anywhere just makes the next run redo that window.

The engine reaches repositories only through replicas (``replica_factory(url)``,
:mod:`wmsync.replica`), never prints and never touches arcpy: it reports through a
:class:`SyncListener`, and only from the calling thread (workers talk to a
:class:`~wmsync.progress.QueuedListener`). Children are worked on in a bounded thread
pool. Names are the servers' own spellings (:mod:`wmsync.membership`).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import wentback
from .auth import TokenLike
from .errors import (
    Cancelled,
    ElementsLeftOut,
    RepositoryError,
    SyncRefused,
    ValueTableError,
    WMSyncError,
)
from .exchange.leftout import LeftOut, describe_all
from .feed import Feed, import_chunk
from .idblocks import (
    JOB_ID_BLOCK,
    allocate_blocks,
    claim_block,
    int_or_none,
    joining,
    node_rows,
)
from .membership import node_row, same_name
from .pairrules import (
    counter_text,
    gone_back,
    nothing_waiting,
    read_child,
    read_parent,
    repository_kind,
    watermarks,
)
from .progress import QueuedListener, SyncListener
from .replica import Replica, ReplicaFactory, default_replica_factory
from .report import (
    FAILED,
    SKIPPED,
    SYNCHRONIZED,
    ChildResult,
    SyncResult,
    child_line,
    id_changes,
)
from .valuetable import ChildSpec, parse_children

if TYPE_CHECKING:
    from .stock import StockReplicas

log = logging.getLogger(__name__)

#: Where a run keeps the state of stock servers: a state store path (the engine makes
#: the builder) or a :class:`wmsync.stock.StockReplicas` the caller made; ``None``: only
#: servers with the extensions are synchronized (docs/design.md §10).
StateLike = Union[str, "os.PathLike[str]", "StockReplicas", None]

#: Exchange documents are uploaded gzip-compressed (``Content-Encoding: gzip``, which
#: the protocol's raw-body import accepts) at this zlib level; 0 uploads them as they
#: are. Level 1 makes them about 9x smaller for about 7 ms of CPU per MB: on loopback
#: the run's wall time stays within the noise (0-10 % more on 2 cores), on a real
#: network the bytes it saves dominate (docs/performance.md, "What was optimized").
UPLOAD_GZIP_LEVEL = 1


#: The former names of the replica interface and its factory (kept for callers).
RepositoryClient = Replica
ClientFactory = ReplicaFactory


def default_client_factory(
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    timeout: float = 60.0,
    verify: Any = True,
) -> ReplicaFactory:
    """A factory of extension replicas over HTTP (see :func:`default_replica_factory`)."""
    return default_replica_factory(user=user, token=token, timeout=timeout, verify=verify)


# ---------------------------------------------------------------------------
# Per-child state


# A count of the parent's changes by window (watermark, excludeVia): (count, generation).
_Counts = Dict[Tuple[int, Optional[str]], Tuple[int, Optional[int]]]


@dataclass
class _Pair:
    """Replication state of one (parent, child) pair, as read at the start of the run."""

    spec: ChildSpec
    result: ChildResult
    trusted: bool = False  # both watermarks usable: incremental exchange with echo cut
    child_mark: int = 0  # child's generation up to which its changes are in the parent
    parent_mark: int = 0  # parent's generation up to which its changes are in the child
    server_last_sync: Optional[int] = None
    doing: str = "being checked"  # what the run is doing with it, for a failure message
    ready: bool = False  # prepared: registered and reachable
    pulled: bool = False
    quiet_pull_gen: Optional[int] = None  # a trusted pull that moved nothing: its watermark
    # The child's generation at which its info counted nothing waiting for the parent
    # (its parent row's ``pending`` was 0): the pull then asks for no export.
    quiet_at: Optional[int] = None
    extended: bool = False  # both sides report instance ids: restore detection applies
    seq: int = 0  # the pair's syncId sequence number, as last written
    child_instance: Optional[str] = None
    parent_instance: Optional[str] = None
    child_counter: Optional[str] = None  # each side's highest own counter (counter_text)
    parent_counter: Optional[str] = None

    @property
    def name(self) -> str:
        """The child's own spelling of its name once read, else the row's."""
        return self.result.name


def _run_all(
    pool: ThreadPoolExecutor,
    tasks: List[Callable[[], None]],
    events: QueuedListener,
    listener: SyncListener,
) -> None:
    """Run *tasks* in the run's bounded *pool*; relay their listener calls and the user's
    cancel on this thread."""
    if not tasks:
        return
    pending: set[Future[None]] = {pool.submit(task) for task in tasks}
    while pending:
        done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
        events.relay(listener)
        for future in done:
            future.result()  # tasks catch their own errors; this re-raises bugs
    events.relay(listener)


# ---------------------------------------------------------------------------
# The run


class _Run:
    """One synchronization run; holds what the phases share."""

    def __init__(
        self,
        parent_url: str,
        parent_name: str,
        specs: List[ChildSpec],
        factory: ReplicaFactory,
        full: bool,
        workdir: str,
        max_workers: int = 4,
    ) -> None:
        self.parent_url = parent_url.rstrip("/")
        self.parent_name = parent_name  # the parent's own spelling
        self.factory = factory
        self.full = full
        self.workdir = workdir
        self.events = QueuedListener()  # what workers report to
        self.parent_import_lock = threading.Lock()  # the parent imports one at a time
        self.conflicts: List[Dict[str, Any]] = []
        self.relayed: set[str] = set()  # import answers' warnings already reported
        self._conflict_lock = threading.Lock()
        self.pairs = [_Pair(spec, ChildResult(spec)) for spec in specs]
        self._parent_back_lock = threading.Lock()
        self.parent_back: Optional[str] = None  # the parent's new incarnation, once taken
        # Some child's record shows the parent went back (found before any pair is
        # prepared): every child is then handled as if it might have gone back too.
        self.parent_back_seen = False
        # By pair: its child's name and info as survey_parent read them, or the failure.
        self.surveyed: Dict[int, Union[Tuple[str, Dict[str, Any]], Exception]] = {}
        # One pool for every phase of the run: its threads start once, where a pool per
        # phase started them again (on a busy machine each start waits to be scheduled,
        # which spread the children's first requests out by several ms each).
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(self.pairs))), thread_name_prefix="wmsync"
        )

    def close(self) -> None:
        """Let the run's worker threads go (after its phases)."""
        self.pool.shutdown(wait=True)

    # -- parent ----------------------------------------------------------------

    def register_parent(self, info: Mapping[str, Any]) -> Dict[str, Any]:
        """Make sure the parent has its own node row with a job id block."""
        own = node_row(info, self.parent_name)
        if own is None or int_or_none(own.get("jobIdStart")) is None:
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

    def allocate_blocks(self, parent_info: Mapping[str, Any]) -> Dict[int, int]:
        """Give every child that has none on the parent a disjoint job id block
        (by table row)."""
        return allocate_blocks(parent_info, [pair.spec for pair in self.pairs])

    # -- preparation -------------------------------------------------------------

    def prepare(
        self,
        pair: _Pair,
        child: Replica,
        parent: Replica,
        parent_info: Mapping[str, Any],
        block: int,
    ) -> None:
        """Check one child and register the pair; decide whether watermarks are trusted."""
        url = pair.spec.url.rstrip("/")
        surveyed = self.surveyed.pop(id(pair), None)  # read by survey_parent just before
        if isinstance(surveyed, Exception):
            raise surveyed  # one read per run: a child that failed it is not read again
        if surveyed is None:
            surveyed = read_child(child, pair.spec, self.parent_name, self.parent_url)
        name, info = surveyed
        pair.result.repository = name
        pair.result.kind = repository_kind(info)
        p_row = node_row(parent_info, name)
        c_row = node_row(info, self.parent_name)
        pair.server_last_sync = int_or_none(p_row.get("lastSync")) if p_row else None
        pair.trusted, pair.parent_mark, pair.child_mark = watermarks(p_row, c_row, self.full)
        pair.extended = bool(info.get("instanceId")) and bool(parent_info.get("instanceId"))
        child_back = parent_back = []
        if pair.extended:
            pair.child_instance = str(info["instanceId"])
            pair.parent_instance = str(parent_info["instanceId"])
            pair.child_counter = counter_text(info)
            pair.parent_counter = counter_text(parent_info)
            pair.seq = max(
                int_or_none((row or {}).get(key)) or 0
                for row in (p_row, c_row)
                for key in ("syncSeq", "peerSeq")
            )
            child_back = gone_back(info, p_row, c_row)
            parent_back = gone_back(parent_info, c_row, p_row)
            if parent_back:
                parent_back = parent_still_back(parent, c_row, name)
        # The signs of a child's own restore are in the parent's node row of it: when the
        # parent went back, they went back with it, so the child is handled as if it
        # went back too.
        parent_seen_back = pair.extended and (bool(parent_back) or self.parent_back_seen)
        if child_back or parent_seen_back:
            pair.trusted, pair.parent_mark, pair.child_mark = False, 0, 0
            self.child_went_back(pair, child, parent, p_row, c_row, child_back, block)
        if parent_back:
            self.parent_went_back(pair, parent, parent_info, parent_back)
        own = node_row(info, name)
        handed = own is not None and int_or_none(own.get("jobIdStart")) == block
        registered = p_row is not None and int_or_none(p_row.get("jobIdStart")) is not None
        if not (registered and handed and c_row is not None):
            pair.doing = "being registered"
        if not pair.trusted:
            # A full exchange both ways; forget stale watermarks so they can restart.
            if p_row is not None:
                parent.reset_node(name)
            if c_row is not None:
                child.reset_node(self.parent_name)
        if not registered or not handed:
            # Not yet in the child's hands: (re)check it against concurrent first runs.
            block = claim_block(parent, name, url, block)
        if joining(own, c_row, block):
            # Before the child's rows are written: a failure leaves it joining, and the
            # next run repeats this (which then finds only what is left to do).
            self.renumber(pair, child, block)
        if c_row is None:
            child.update_node(
                self.parent_name,
                server_url=self.parent_url,
                is_parent=True,
                is_connected=True,
            )
        if own is None or int_or_none(own.get("jobIdStart")) != block:
            child.update_node(
                name,
                server_url=url,
                is_parent=False,
                is_connected=True,
                job_id_start=block,
                job_id_block=JOB_ID_BLOCK,
            )
        if pair.extended and not pair.trusted:
            # Both sides record each other's identity now, and the sequence moves past
            # both rows: a restore handled here is not found again by the next run.
            pair.seq += 1
            child.update_node(
                self.parent_name,
                sync_seq=pair.seq,
                peer_instance=pair.parent_instance,
                peer_gen_seen=int_or_none(parent_info.get("generation")),
                peer_counter_seen=pair.parent_counter,
            )
            parent.update_node(
                name,
                sync_seq=pair.seq,
                peer_instance=pair.child_instance,
                peer_gen_seen=int_or_none(info.get("generation")),
                peer_counter_seen=pair.child_counter,
            )
        pair.result.full_exchange = not pair.trusted
        pair.quiet_at = (
            nothing_waiting(info, c_row, self.parent_name, pair.child_mark)
            if pair.trusted
            else None
        )
        pair.ready = True

    def renumber(self, pair: _Pair, child: Replica, block: int) -> None:
        """The joining child's own jobs move into its block, on the child (docs/design.md
        §4, "A job has one id on every repository"); the result lists old -> new."""
        moved = child.renumber_own_jobs(pair.name, self.parent_name, block, JOB_ID_BLOCK)
        pair.result.add_renumbered(pair.name, moved)
        if moved:
            self.events.info(
                f"{pair.name}: {len(moved)} job(s) of its own renumbered into its block as "
                f"it joins {self.parent_name}: {id_changes(moved)}"
            )

    def child_went_back(
        self,
        pair: _Pair,
        child: Replica,
        parent: Replica,
        p_row: Optional[Mapping[str, Any]],
        c_row: Optional[Mapping[str, Any]],
        reasons: List[str],
        block: int,
    ) -> None:
        """The child was restored or rebuilt: a new incarnation, re-stamped changes since
        its last confirmed synchronization, job ids past what the parent saw in its
        block, and the jobs it made since it went back under ids the parent holds for
        other jobs renumbered past them.

        Without *reasons*, the parent went back and took its records of the child with
        it, so a restore of the child cannot be ruled out: the child is handled the same
        way (an unneeded new incarnation costs at most a logged conflict), and the other
        children are asked too, since the parent may have lost jobs of its block.
        """
        since = int_or_none((c_row or {}).get("lastSyncGen")) or 0
        with ExitStack() as stack:
            partners = [parent]
            if not reasons:
                partners += self.children_to_ask(stack, but=pair)
            seen = self.block_view(partners, block, JOB_ID_BLOCK, []).highest
            high = _highest(int_or_none((p_row or {}).get("jobIdHigh")), seen)
            answer = _new_incarnation(child, since, None if high is None else high + 1)
            if reasons:
                self.events.warning(_went_back_text(pair.name, reasons, answer))
            else:
                self.events.warning(_parent_took_records_text(pair.name, self.parent_name, answer))
            self.renumber_reused(pair, child, pair.name, partners, block, JOB_ID_BLOCK, since, high)

    def parent_went_back(
        self, pair: _Pair, parent: Replica, parent_info: Mapping[str, Any], reasons: List[str]
    ) -> None:
        """The parent was restored or rebuilt (found by any child's pair; handled once a
        run): its changes since its oldest confirmed synchronization with any child are
        re-stamped, and the jobs it made since it went back under ids a child holds for
        other jobs are renumbered past every id the children hold in its block (the
        full pulls then bring back the jobs it lost, under their own ids)."""
        with self._parent_back_lock, ExitStack() as stack:
            if self.parent_back is not None:
                return
            marks = [
                int_or_none(n.get("lastSyncGen")) or 0
                for n in node_rows(parent_info)
                if not same_name(str(n.get("name", "")), self.parent_name)
            ]
            since = min(marks, default=0)
            own = node_row(parent_info, self.parent_name) or {}
            start = int_or_none(own.get("jobIdStart"))
            size = int_or_none(own.get("jobIdBlock")) or JOB_ID_BLOCK
            children: List[Replica] = []
            high = None
            if start is not None:
                children = self.children_to_ask(stack)
                high = self.block_view(children, start, size, []).highest
            answer = _new_incarnation(parent, since, None if high is None else high + 1)
            self.parent_back = str(answer.get("incarnation") or "")
            self.events.warning(_went_back_text(self.parent_name, reasons, answer))
            if start is not None:
                self.renumber_reused(
                    pair, parent, self.parent_name, children, start, size, since, high
                )

    def survey_parent(self, parent_info: Mapping[str, Any]) -> None:
        """Before the pairs are prepared (at the same time): does any child's record of
        the parent show that the parent went back in time? A child restored to the same
        moment as the parent shows nothing in its own pair, yet it may reuse version
        counters that another child holds from before; so one child's finding counts for
        all (:attr:`parent_back_seen`). Each child's answer (or failure) is kept for its
        preparation, so a child is still read once a run."""

        def look(pair: _Pair) -> bool:
            try:
                with closing(self.factory(pair.spec.url)) as child:
                    name, info = read_child(child, pair.spec, self.parent_name, self.parent_url)
            except Exception as exc:  # its preparation fails with it, as the read's owner
                self.surveyed[id(pair)] = exc
                return False
            self.surveyed[id(pair)] = (name, info)
            if not (info.get("instanceId") and parent_info.get("instanceId")):
                return False  # not a pair of extension servers: no such records
            c_row = node_row(info, self.parent_name)
            if not gone_back(parent_info, c_row, node_row(parent_info, name)):
                return False
            try:
                with closing(self.factory(self.parent_url)) as parent:
                    return bool(parent_still_back(parent, c_row, name))
            except WMSyncError:
                return False

        self.parent_back_seen = any(list(self.pool.map(look, self.pairs)))

    def children_to_ask(self, stack: ExitStack, but: Optional[_Pair] = None) -> List[Replica]:
        """The run's children that are this parent's (their node row of it exists), open
        until *stack* closes, except *but*'s; one that cannot be read is left out with a
        warning."""
        children = []
        for other in self.pairs:
            if other is but:
                continue
            try:
                replica = stack.enter_context(closing(self.factory(other.spec.url)))
                _, info = read_child(replica, other.spec, self.parent_name, self.parent_url)
            except WMSyncError as exc:
                self.events.warning(
                    f"{other.name}: not asked which job ids it holds ({exc}); a job id "
                    "given again after a restore is renumbered where it arrives"
                )
                continue
            if node_row(info, self.parent_name) is not None and hasattr(replica, "job_ids"):
                children.append(replica)
        return children

    def block_view(
        self, partners: List[Replica], start: int, size: int, ids: List[int]
    ) -> wentback.BlockView:
        """What *partners* hold of a job id block: its highest id, the GUIDs at *ids*."""

        def trouble(partner: Replica, exc: WMSyncError) -> None:
            self.events.warning(
                f"{partner.display_url}: could not say which job ids it holds ({exc})"
            )

        return wentback.look(partners, start, size, ids, trouble)

    def renumber_reused(
        self,
        pair: _Pair,
        replica: Replica,
        name: str,
        partners: List[Replica],
        start: int,
        size: int,
        since: int,
        high: Optional[int],
    ) -> None:
        """Before anything is exchanged: the jobs the repository that went back made
        since, under ids up to *high* that a partner holds for other jobs, move past
        *high*; the result lists old -> new."""
        if high is None or high < start:
            return
        found = wentback.candidates(replica, name, start, size, high, since)
        if not found:
            return
        view = self.block_view(partners, start, size, [int(job["from"]) for job in found])
        moved = wentback.move(
            replica, name, start, size, high, since, wentback.clashing(found, view)
        )
        pair.result.add_renumbered(name, moved)
        if moved:
            self.events.info(
                f"{name}: {len(moved)} job(s) it made after it went back in time had ids the "
                f"cluster already gave other jobs; renumbered: {id_changes(moved)}"
            )

    # -- the two directions ----------------------------------------------------------

    def check_cancel(self) -> None:
        if self.events.cancelled():
            raise Cancelled("cancelled before this step")

    def feed(
        self,
        source_url: str,
        since_gen: int,
        exclude_via: Optional[str],
        label: str,
        members: int,
        empty_at: Optional[int] = None,
        marks: Optional[Dict[str, int]] = None,
    ) -> Feed:
        """A started :class:`Feed` of one export window of *source_url* for *members*
        (*empty_at*, *marks* as ``sync_seqs``: see :class:`Feed`)."""
        feed = Feed(
            lambda: self.factory(source_url),
            since_gen,
            exclude_via,
            label,
            members,
            self.workdir,
            self.events.cancelled,
            gzip_level=UPLOAD_GZIP_LEVEL,
            empty_at=empty_at,
            sync_seqs=marks,
        )
        feed.start()
        return feed

    @staticmethod
    def marks(pairs: List[_Pair], row: Callable[[_Pair], str]) -> Optional[Dict[str, int]]:
        """The sequence numbers the sending side's rows (*row* of each pair) take for a
        direction, asked with its export: one request where each pair's bump
        (:meth:`sender_mark`) would make one (restore detection pairs only)."""
        marks = {row(pair): pair.seq + 1 for pair in pairs if pair.extended}
        return marks or None

    def transfer(
        self,
        feed: Feed,
        member: int,
        target: Replica,
        import_lock: Optional[threading.Lock] = None,
        announce: Optional[Callable[[], Dict[str, Any]]] = None,
    ) -> Tuple[int, int, List[Dict[str, Any]], List[LeftOut]]:
        """Import every chunk of *feed* into *target*, in order.

        Only the import holds *import_lock*: the exports, downloads and validations of
        several children still overlap. An element that cannot travel (the source left
        it out, or *target* refused it: :func:`~wmsync.feed.import_chunk`) never stops
        the others; it is returned, and the caller keeps the direction's watermark.
        *announce* (:meth:`sender_mark`) is called once, after the export and before
        the first import; what it returns goes with every import.

        :returns: (elements moved, generation the export covered, import answers,
            elements left out).
        """
        moved, answers = 0, []
        refused: List[LeftOut] = []
        mark: Optional[Dict[str, Any]] = None
        for chunk in feed.chunks(member):
            if chunk.path is None:
                continue
            self.check_cancel()
            if mark is None:
                mark = announce() if announce is not None else {}
            before = len(refused)
            answers.append(import_chunk(target, chunk, self.workdir, refused, import_lock, mark))
            moved += chunk.count - (len(refused) - before)
        assert feed.generation is not None  # set before the first chunk
        return moved, feed.generation, answers, feed.skipped + refused

    def record(self, pair: _Pair, answer: Mapping[str, Any], repository: str) -> None:
        """Add an import's conflicts and renumbered jobs to the child's result."""
        conflicts = answer.get("conflicts") or []
        pair.result.conflicts += len(conflicts)
        pair.result.add_renumbered(repository, list(answer.get("renumbered") or []))
        warnings = [str(w) for w in answer.get("warnings") or []]
        with self._conflict_lock:
            self.conflicts.extend(_conflict_entry(c, repository) for c in conflicts)
            self.relayed.update(warnings)
        for warning in warnings:
            self.events.warning(
                warning if warning.startswith(f"{repository}: ") else f"{repository}: {warning}"
            )

    def sender_mark(
        self, pair: _Pair, sender: Replica, row: str, sender_name: str, feed: Feed
    ) -> Callable[[], Dict[str, Any]]:
        """What makes a direction's import carry the sender's sequence number.

        Called once the export has been read and before the first import: the sending
        side's node row of the pair (*row*, on *sender*) takes the next sequence number
        (``syncSeq``), then every import of the direction hands that number to the
        receiving side, which records it (``peerSeq``) in the import's own transaction.
        A sender later restored to a backup taken before the export then holds a smaller
        ``syncSeq`` than its partner confirmed, although the run was cut before any
        renewal: :func:`gone_back` finds it (docs/design.md §4, "Restores and
        rebuilds"). A run cut between the bump and the import leaves the sender ahead,
        which is never taken for a restore. Extension servers only (``{}`` otherwise).

        When *feed*'s export already bumped the row (:meth:`marks`), no request is made.
        """

        def announce() -> Dict[str, Any]:
            if not pair.extended:
                return {}
            marked = feed.marked.get(row)
            if marked is not None:
                pair.seq = max(pair.seq, marked)
            else:
                pair.seq += 1
                sender.update_node(row, sync_seq=pair.seq)
            return {"peer": sender_name, "peer_seq": pair.seq}

        return announce

    def guarded(
        self,
        pair: _Pair,
        work: Callable[[Replica, Replica], None],
        label: Optional[str] = None,
    ) -> None:
        """Run one child's *work* with its own replicas (child, parent); any failure fails
        that child alone. With a *label*, the work is one progress step."""
        if label:
            self.events.step(label)
        with ExitStack() as replicas:
            try:
                child = self.factory(pair.spec.url)
                replicas.callback(child.close)
                parent = self.factory(self.parent_url)
                replicas.callback(parent.close)
                work(child, parent)
            except WMSyncError as exc:
                self.fail(pair, exc)
            except Exception as exc:  # a bug must not stop the other children
                log.exception("unexpected error with %s while %s", pair.name, pair.doing)
                self.fail(pair, exc)
        if label:
            self.events.step_done()

    def pull(self, pair: _Pair) -> None:
        """The child's changes since its watermark go to the parent."""
        pair.doing = "sending its changes to the parent"

        def work(child: Replica, parent: Replica) -> None:
            via = self.parent_name if pair.trusted else None
            marks = self.marks([pair], lambda _: self.parent_name)
            feed = self.feed(
                pair.spec.url,
                pair.child_mark,
                via,
                pair.name,
                1,
                empty_at=pair.quiet_at,
                marks=marks,
            )
            try:
                sent, generation, answers, left_out = self.transfer(
                    feed,
                    0,
                    parent,
                    self.parent_import_lock,
                    self.sender_mark(pair, child, self.parent_name, pair.name, feed),
                )
            finally:
                feed.leave(0)
                feed.join()
            for answer in answers:
                self.record(pair, answer, self.parent_name)
            pair.result.sent = sent
            if left_out:  # everything else is in; the watermark stays for a retry
                raise ElementsLeftOut(describe_all(left_out), left_out)
            # Commit: the child's watermark is the generation the export covered, never the
            # child's generation after the push (that would skip edits made during the run).
            if pair.trusted and not answers:
                # Nothing moved: the child's watermark goes with the push's renewal (two
                # node writes fewer). A run cut before it leaves the old watermark and
                # syncIds, as a run cut before the pull's renewal did.
                pair.quiet_pull_gen = generation
            elif pair.trusted:
                # A new syncId at every watermark move, the moved side first.
                sync_id, extra = self.renewal(pair)
                child.update_node(
                    self.parent_name,
                    last_sync_gen=generation,
                    sync_id=sync_id,
                    **extra(pair.parent_instance, _last_generation(answers), pair.parent_counter),
                )
                parent.update_node(
                    pair.name,
                    sync_id=sync_id,
                    **extra(pair.child_instance, generation, pair.child_counter, confirmed=True),
                )
            else:
                # A full exchange gets its syncId only once both directions committed.
                child.update_node(self.parent_name, last_sync_gen=generation)
            pair.pulled = True

        self.guarded(pair, work, f"{pair.name}: sending changes to the parent")

    def push_feeds(self, pairs: List[_Pair]) -> Dict[int, Tuple[Feed, int]]:
        """One started feed per export window of the parent, shared by the *pairs* that
        ask for the same window; by pair (its ``id``): (feed, member number)."""
        groups: Dict[Tuple[int, Optional[str]], List[_Pair]] = {}
        unfiltered, empty = self.unfiltered_windows(pairs)
        for pair in pairs:
            via = pair.name if pair.trusted and id(pair) not in unfiltered else None
            groups.setdefault((pair.parent_mark, via), []).append(pair)
        feeds: Dict[int, Tuple[Feed, int]] = {}
        for (mark, via), members in groups.items():
            label = members[0].name if len(members) == 1 else self.parent_name
            empty_at = empty.get(mark) if via is None else None
            marks = self.marks(members, lambda pair: pair.name)
            feed = self.feed(self.parent_url, mark, via, label, len(members), empty_at, marks)
            for number, pair in enumerate(members):
                feeds[id(pair)] = (feed, number)
        return feeds

    def unfiltered_windows(self, pairs: List[_Pair]) -> Tuple[set[int], Dict[int, int]]:
        """The trusted pairs (by ``id``) whose echo cut leaves nothing out, so that they
        can share the export without one with the same watermark; and the watermarks
        whose uncut window the parent counted empty, with the generation of that count
        (their feed needs no export: a quiet cluster's push asks for no document).

        A trusted pair's window leaves out what came from the child (``excludeVia``);
        when the parent holds nothing after the watermark that came from the child, the
        cut window and the uncut one are the same document. The parent counts them
        (no file written): the uncut window and every child's cut window in one request
        (``excludeEachVia``); from a parent without it, one count for the uncut window,
        and one per child only when that one is not empty. A count that fails just keeps
        the pairs on their own windows.
        """
        by_mark: Dict[int, List[_Pair]] = {}
        for pair in pairs:
            if pair.trusted:
                by_mark.setdefault(pair.parent_mark, []).append(pair)
        shared: set[int] = set()
        groups = [(mark, group) for mark, group in by_mark.items() if len(group) > 1]
        if not groups:
            return shared, {}
        totals, counts, rest = self.count_each_cut(groups)
        totals.update(self.count_windows([(m, None) for m, _ in rest if (m, None) not in totals]))
        cut: List[Tuple[int, Optional[str]]] = [
            (mark, pair.name)
            for mark, group in rest
            for pair in group
            if totals.get((mark, None), (-1, None))[0] > 0
        ]
        counts.update(self.count_windows(cut))
        for mark, group in groups:
            total = totals.get((mark, None), (None, None))[0]
            for pair in group:
                cut_count = counts.get((mark, pair.name), (None, None))[0]
                if total is not None and (total == 0 or cut_count == total):
                    shared.add(id(pair))
        empty = {
            mark: generation
            for (mark, _), (total, generation) in totals.items()
            if total == 0 and generation is not None
        }
        return shared, empty

    def count_each_cut(
        self, groups: List[Tuple[int, List[_Pair]]]
    ) -> Tuple[_Counts, _Counts, List[Tuple[int, List[_Pair]]]]:
        """Each group's uncut window and its members' cut windows, counted in one
        request per group (``count_excluding_each``): (uncut counts, cut counts, the
        groups whose cut windows are left to count one at a time, as a parent without it
        needs). A count that fails leaves its group out of all three."""
        totals: _Counts = {}
        counts: _Counts = {}
        rest: List[Tuple[int, List[_Pair]]] = []
        for mark, group in groups:
            try:
                with closing(self.factory(self.parent_url)) as parent:
                    count_each = getattr(parent, "count_excluding_each", None)
                    if count_each is None:
                        rest.append((mark, group))
                        continue
                    total, generation, cut = count_each(mark, [pair.name for pair in group])
            except WMSyncError as exc:
                log.info("counting the parent's changes failed (%s): %s", mark, exc)
                continue
            totals[(mark, None)] = (total, generation)
            if cut is None:  # a parent from before excludeEachVia
                rest.append((mark, group))
                continue
            for name, count in cut.items():
                counts[(mark, name)] = (count, generation)
        return totals, counts, rest

    def count_windows(self, windows: List[Tuple[int, Optional[str]]]) -> _Counts:
        """The parent's count of each window and the generation it was made at (``None``
        from a replica that counts without one), asked at the same time; a window whose
        count failed is left out."""
        counts: _Counts = {}

        def count(window: Tuple[int, Optional[str]]) -> None:
            try:
                parent = self.factory(self.parent_url)
                try:
                    count_window = getattr(parent, "count_window", None)
                    if count_window is not None:
                        total, generation = count_window(*window)
                        counts[window] = (total, generation)
                    else:
                        counts[window] = (parent.count_changes(*window), None)
                finally:
                    parent.close()
            except WMSyncError as exc:
                log.info("counting the parent's changes failed (%s): %s", window, exc)

        list(self.pool.map(count, windows))
        return counts

    def push(self, pair: _Pair, feed: Feed, member: int) -> None:
        """The parent's changes since the pair's watermark go to the child."""
        try:
            self._push(pair, feed, member)
        finally:
            feed.leave(member)

    def _push(self, pair: _Pair, feed: Feed, member: int) -> None:
        name = pair.name
        pair.doing = "receiving the parent's changes"

        def work(child: Replica, parent: Replica) -> None:
            received, generation, answers, left_out = self.transfer(
                feed,
                member,
                child,
                None,
                self.sender_mark(pair, parent, name, self.parent_name, feed),
            )
            for answer in answers:
                self.record(pair, answer, name)
            pair.result.received = received
            if left_out:  # everything else is in; the watermark stays for a retry
                raise ElementsLeftOut(describe_all(left_out), left_out)
            both = pair.pulled
            if pair.trusted or both:
                # A new syncId on both sides, the moved side first, also when the pull
                # failed (the pair stays trusted on the child's old watermark): a child
                # restored to before this push then holds an older one.
                sync_id, extra = self.renewal(pair)
                quiet_pull = pair.quiet_pull_gen
                stamped = parent.update_node(
                    name,
                    last_sync_gen=generation,
                    sync_id=sync_id,
                    stamp_last_sync=both,
                    **extra(
                        pair.child_instance,
                        _highest(quiet_pull, _last_generation(answers)),
                        pair.child_counter,
                    ),
                )
                child.update_node(
                    self.parent_name,
                    last_sync_gen=quiet_pull,  # the quiet pull's watermark (None: unchanged)
                    sync_id=sync_id,
                    **extra(pair.parent_instance, generation, pair.parent_counter, confirmed=True),
                )
            else:
                # A full exchange whose pull failed: no syncId, so the next run is a full
                # exchange again, without echo suppression.
                stamped = parent.update_node(name, last_sync_gen=generation)
            if both:
                moment = stamped if stamped is not None else _now_ms()
                pair.result.last_sync = datetime.fromtimestamp(moment / 1000, timezone.utc)
                pair.result.state = SYNCHRONIZED
                pair.result.error = None
                self.events.info(child_line(pair.result))

        self.guarded(pair, work, f"{name}: receiving changes from the parent")

    def renewal(self, pair: _Pair) -> Tuple[str, Callable[..., Dict[str, Any]]]:
        """A new syncId for the pair, and the extra node-row fields that go with it (only
        to extension servers): its sequence number, the peer's instance id and a
        generation the peer confirmed, and on the side written second (*confirmed*) the
        sequence number the first side now holds."""
        pair.seq += 1
        seq = pair.seq

        def extra(
            instance: Optional[str],
            generation: Optional[int],
            counter: Optional[str],
            confirmed: bool = False,
        ) -> Dict[str, Any]:
            if not pair.extended:
                return {}
            return {
                "sync_seq": seq,
                "peer_seq": seq if confirmed else None,
                "peer_instance": instance,
                "peer_gen_seen": generation,
                "peer_counter_seen": counter,
            }

        return secrets.token_hex(8), extra

    def fail(self, pair: _Pair, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, WMSyncError) else f"unexpected {type(exc).__name__}"
        pair.result.state = FAILED
        if pair.result.error is None:  # the first failure says why; a push may follow
            pair.result.error = f"while {pair.doing}: {text}"
            self.events.warning(child_line(pair.result))
        elif isinstance(exc, ElementsLeftOut):  # every element left out is named
            pair.result.error += f"; and while {pair.doing}: {text}"
            self.events.warning(f"{pair.name}: while {pair.doing}: {text}")


def parent_still_back(parent: Replica, c_row: Optional[Mapping[str, Any]], name: str) -> List[str]:
    """:func:`gone_back` of the parent against the child's row of it (*c_row*), on the
    parent's rows read again now. They were first read before the child's: a rival
    run's push in between (sequence bump, import, renewal) makes the child confirm a
    newer number than the parent held then; only what it holds now counts."""
    fresh = parent.replication_info()
    return gone_back(fresh, c_row, node_row(fresh, name))


def _new_incarnation(replica: Replica, since_gen: int, floor: Optional[int]) -> Dict[str, Any]:
    take = getattr(replica, "new_incarnation", None)
    if take is None:
        raise RepositoryError("it went back in time but cannot take a new incarnation")
    answer = take(since_gen, floor)
    return dict(answer) if isinstance(answer, Mapping) else {}


def _highest(*values: Optional[int]) -> Optional[int]:
    return max((v for v in values if v is not None), default=None)


def _last_generation(answers: List[Dict[str, Any]]) -> Optional[int]:
    """The importing side's generation after the last import of a transfer (``None``
    when nothing was imported: the side then reported no new generation)."""
    return int_or_none(answers[-1].get("generation")) if answers else None


def _went_back_text(name: str, reasons: List[str], answer: Mapping[str, Any]) -> str:
    return (
        f"{name} went back in time (restored from a backup or rebuilt: "
        f"{'; '.join(reasons)}); its edits now count as {answer.get('incarnation')}, "
        f"{answer.get('restamped', 0)} element(s) it changed since its last confirmed "
        "synchronization were re-stamped (versions the restore lost meet them as "
        "conflicts, logged); full exchange both ways"
    )


def _parent_took_records_text(name: str, parent: str, answer: Mapping[str, Any]) -> str:
    return (
        f"{name}: {parent} went back in time with its records of {name}, so a restore "
        f"of {name} cannot be ruled out; handled as one: its edits now count as "
        f"{answer.get('incarnation')}, {answer.get('restamped', 0)} element(s) it changed "
        "since its last confirmed synchronization were re-stamped (a version a restore "
        "lost meets them as a logged conflict); full exchange both ways"
    )


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
        "id": conflict.get("id"),
        "name": conflict.get("name"),
        "fields": list(conflict.get("fields") or []),
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
    name = pair.name
    if server is None:
        return (
            "warning",
            f"row time ignored; {name} has no recorded synchronization: full exchange",
        )
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


def read_inputs(children: Any) -> _Inputs:
    specs = parse_children(children)
    return _Inputs(specs, [spec for spec in specs if spec.connected])


def not_connected_reason(spec: ChildSpec) -> str:
    return f"not connected (connected is {spec.connected_text!r})"


def _skipped(spec: ChildSpec) -> ChildResult:
    return ChildResult(spec, state=SKIPPED, error=not_connected_reason(spec))


def make_factory(
    replica_factory: Optional[ReplicaFactory],
    client_factory: Optional[ReplicaFactory],
    user: Optional[str],
    token: TokenLike,
    timeout: float,
    verify: Any,
    stock: Optional[StockReplicas] = None,
) -> ReplicaFactory:
    return (
        replica_factory
        or client_factory
        or default_replica_factory(
            user=user, token=token, timeout=timeout, verify=verify, stock=stock
        )
    )


def known_names(parent_url: str, parent_name: str, specs: List[ChildSpec]) -> Dict[str, str]:
    """The repository name a run knows for each URL: the parent name, each row's name.
    A stock server reports none, so these are its names (docs/design.md §10)."""
    names = {spec.url.rstrip("/"): spec.name for spec in specs}
    names[parent_url.rstrip("/")] = parent_name
    return names


def stock_builder(
    state: StateLike, parent_url: str, parent_name: str, specs: List[ChildSpec]
) -> Optional[StockReplicas]:
    """The run's builder of stock replicas (``None``: extension servers only), knowing
    the run's names by URL. A builder made here or given is closed by the run."""
    if state is None:
        return None
    from .stock import StockReplicas

    builder = state if isinstance(state, StockReplicas) else StockReplicas(state)
    builder.add_names(known_names(parent_url, parent_name, specs))
    return builder


def stock_findings(
    builder: Optional[StockReplicas], relayed: set[str]
) -> Tuple[List[str], List[Dict[str, Any]]]:
    """The stock warnings not yet reported through an import answer, and the conflicts
    the stock scans found (in the report's shape)."""
    if builder is None:
        return [], []
    warnings = [w for w in builder.warnings() if w not in relayed]
    conflicts = [_conflict_entry(c, str(c.get("repository", ""))) for c in builder.conflicts()]
    return warnings, conflicts


def synchronize(
    parent_url: str,
    parent_name: str,
    children: Any,
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    replica_factory: Optional[ReplicaFactory] = None,
    client_factory: Optional[ReplicaFactory] = None,
    listener: Optional[SyncListener] = None,
    full: bool = False,
    max_workers: int = 4,
    timeout: float = 60.0,
    verify: Any = True,
    state: StateLike = None,
) -> SyncResult:
    """Synchronize a cluster: every connected child to the parent, then back to all.

    :param parent_url: the parent's WMServer URL.
    :param parent_name: the parent repository's name (matched to the server's own, case
        aside; the server's spelling is the one used).
    :param children: the child value table (text, list of rows or ValueTable-like).
    :param replica_factory: ``make(url) -> Replica`` (default: HTTP, extension servers
        only); ``client_factory`` is its former name.
    :param full: ignore watermarks and exchange everything (``wmsync sync --full``).
    :param state: the state store of stock servers (a path), or a
        :class:`~wmsync.stock.StockReplicas` the caller's factory already uses; the run
        closes it at its end (releasing its repository locks), whatever happens. With a
        path and no factory, the default factory synchronizes servers without the
        extensions through it. Without it, such servers are refused.
    :returns: a :class:`SyncResult`; per-child failures are in it, never raised.
    """
    listener = listener or SyncListener()
    started = datetime.now(timezone.utc)

    def done(
        status: int,
        results: List[ChildResult],
        error: Optional[str] = None,
        conflicts: Optional[List[Dict[str, Any]]] = None,
        warnings: Optional[List[str]] = None,
    ) -> SyncResult:
        return SyncResult(
            status=status,
            parent_name=parent_name,
            parent_url=parent_url,
            started=started,
            finished=datetime.now(timezone.utc),
            children=results,
            conflicts=conflicts or [],
            error=error,
            warnings=warnings or [],
        )

    try:
        inputs = read_inputs(children)
    except ValueTableError as exc:
        return done(-1, [], f"the child table was refused, nothing changed: {exc}")
    for row_note in (n for spec in inputs.specs for n in spec.notes):
        (listener.warning if row_note.level == "warning" else listener.info)(row_note.text)
    skipped = {spec.row: _skipped(spec) for spec in inputs.specs if not spec.connected}
    for result in skipped.values():
        listener.warning(f"{result.name} skipped: {result.error}")
    if not inputs.connected:
        return done(-1, list(skipped.values()), "no connected child repository to synchronize")

    try:
        builder = stock_builder(state, parent_url, parent_name, inputs.connected)
    except (OSError, WMSyncError) as exc:
        return done(
            -1, list(skipped.values()), f"the state store of stock servers cannot be used: {exc}"
        )
    try:
        factory = make_factory(
            replica_factory, client_factory, user, token, timeout, verify, builder
        )
        first, parent_went_back = _synchronize(
            parent_url,
            parent_name,
            inputs,
            skipped,
            factory,
            listener,
            full,
            max_workers,
            builder,
            done,
        )
        if not parent_went_back or first.status != 0 or first.cancelled:
            return first
        # The parent re-stamped its changes while the run was being prepared. Children that
        # already held them (synchronized since it went back) met the re-stamped versions
        # during the push, after their own pulls, and now hold both versions' marks; one
        # more pass takes that back to the parent and out to the others, so that the run
        # ends with every repository in step (docs/reliability.md, "Restores and
        # rebuilds").
        listener.info(
            f"{first.parent_name} went back in time: one more pass, so that what its "
            "children made of its re-stamped changes reaches every repository"
        )
        again = _Inputs(
            inputs.specs,
            [replace(spec, last_sync=None) for spec in inputs.connected],  # no row-time notes again
        )
        second, _ = _synchronize(
            parent_url,
            first.parent_name,
            again,
            skipped,
            factory,
            listener,
            False,
            max_workers,
            builder,
            done,
        )
        return _settled(first, second)
    finally:
        if builder is not None:
            builder.close()  # releases the stock repositories' locks, even on failure


def _synchronize(
    parent_url: str,
    parent_name: str,
    inputs: _Inputs,
    skipped: Mapping[int, ChildResult],
    factory: ReplicaFactory,
    listener: SyncListener,
    full: bool,
    max_workers: int,
    builder: Optional[StockReplicas],
    done: Callable[..., SyncResult],
) -> Tuple[SyncResult, bool]:
    """The run itself, once the inputs are read and the factory is made; and whether the
    parent was found to have gone back in time in it."""
    with tempfile.TemporaryDirectory(prefix="wmsync-") as workdir:
        try:
            parent_name, parent_info = read_parent(factory, parent_url, parent_name)
            run = _Run(
                parent_url, parent_name, inputs.connected, factory, full, workdir, max_workers
            )
            parent_info = run.register_parent(parent_info)
        except (SyncRefused, RepositoryError) as exc:
            message = f"parent {parent_name}: {exc}"
            unused = [
                ChildResult(spec, error="not attempted: the parent could not be used")
                for spec in inputs.connected
            ]
            warnings, _ = stock_findings(builder, set())
            for warning in warnings:
                listener.warning(warning)
            outcome = done(
                -1, _in_table_order(inputs.specs, skipped, unused), message, None, warnings
            )
            return outcome, False
        results = _in_table_order(inputs.specs, skipped, [p.result for p in run.pairs])

        blocks = run.allocate_blocks(parent_info)
        try:
            run.survey_parent(parent_info)
            _run_all(
                run.pool,
                [
                    _prepare_task(run, pair, parent_info, blocks[pair.spec.row])
                    for pair in run.pairs
                ],
                run.events,
                listener,
            )
            ready = [pair for pair in run.pairs if pair.ready]
            for pair in ready:
                note = _check_row_time(pair)
                if note:
                    (listener.warning if note[0] == "warning" else listener.info)(note[1])
            # Only children that are ready have steps: one per phase.
            listener.begin(len(ready) * 2, "Synchronizing job data")
            _run_all(run.pool, [_bind(run.pull, pair) for pair in ready], run.events, listener)
            feeds = run.push_feeds(ready)
            try:
                _run_all(
                    run.pool,
                    [_bind_push(run, pair, *feeds[id(pair)]) for pair in ready],
                    run.events,
                    listener,
                )
            finally:
                for feed, _ in feeds.values():
                    feed.leave_all()
                    feed.join()
        finally:
            run.close()
            run.events.replay(listener)
        warnings, stock_conflicts = stock_findings(builder, run.relayed)
        for warning in warnings:
            listener.warning(warning)
        failed = sum(1 for pair in run.pairs if pair.result.state != SYNCHRONIZED)
        outcome = done(
            failed, results, None, run.conflicts + stock_conflicts, sorted(run.relayed) + warnings
        )
        outcome.parent_kind = repository_kind(parent_info)
        outcome.parent_name = parent_name  # the server's own spelling
        if run.events.cancelled():
            outcome.cancelled = True
            listener.warning(
                "Cancelled: the run stopped at a safe point; nothing is half-applied, and "
                "children not synchronized keep their old Last Synchronized time"
            )
        return outcome, run.parent_back is not None


def _settled(first: SyncResult, second: SyncResult) -> SyncResult:
    """One result for a run made of two passes: the second pass's states and times, the
    counts, ids changed, conflicts and warnings of both."""
    children = []
    for one, two in zip(first.children, second.children):
        if one.state == SKIPPED:
            children.append(one)
            continue
        two.spec = one.spec  # the row as the table gave it (its time, for a failure)
        two.sent += one.sent
        two.received += one.received
        two.conflicts += one.conflicts
        two.renumbered_ids = one.renumbered_ids + two.renumbered_ids
        two.renumbered += one.renumbered
        two.full_exchange = one.full_exchange or two.full_exchange
        children.append(two)
    second.children = children
    second.started = first.started
    second.conflicts = first.conflicts + second.conflicts
    second.warnings = list(dict.fromkeys(first.warnings + second.warnings))
    return second


def _in_table_order(
    specs: List[ChildSpec], skipped: Mapping[int, ChildResult], results: List[ChildResult]
) -> List[ChildResult]:
    by_row = {result.spec.row: result for result in results}
    by_row.update(skipped)
    return [by_row[spec.row] for spec in specs]


def _bind(method: Callable[[_Pair], None], pair: _Pair) -> Callable[[], None]:
    return lambda: method(pair)


def _bind_push(run: _Run, pair: _Pair, feed: Feed, member: int) -> Callable[[], None]:
    return lambda: run.push(pair, feed, member)


def _prepare_task(
    run: _Run, pair: _Pair, parent_info: Mapping[str, Any], block: int
) -> Callable[[], None]:
    def task() -> None:
        run.guarded(
            pair, lambda child, parent: run.prepare(pair, child, parent, parent_info, block)
        )

    return task


__all__ = [
    "ClientFactory",
    "Replica",
    "ReplicaFactory",
    "RepositoryClient",
    "StateLike",
    "SyncListener",
    "default_client_factory",
    "default_replica_factory",
    "known_names",
    "repository_kind",
    "stock_builder",
    "synchronize",
]
