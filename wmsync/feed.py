"""One export of a source repository, made once and fed to every target that shares its
window (docs/performance.md, "Shared exports and split documents").

A *window* is what an export selects: the source, ``sinceGen`` and ``excludeVia``. Every
untrusted pair of a first synchronization asks the parent for the same window (all from
0, no echo cut), so the parent exports, the client downloads, validates and compresses
that document once, and each child imports the same file.

The export is split into chunks of at most :data:`CHUNK_ELEMENTS` elements when the
source can split (``replica.splits_exports``), so that no exchange document has to hold a
whole repository; every chunk covers the same generation (the first chunk's). A producer
thread makes the chunks one or two ahead of the slowest target, so that the next chunk's
export, download and validation overlap the targets' imports of this one (targets still
waiting for a worker are not waited for: their chunks stay on disk until they read them).
The first chunk is smaller (:data:`FIRST_CHUNK_ELEMENTS`), so that the imports begin
early, and each next chunk's export is asked as soon as the previous one is answered, so
that the source exports while the client downloads and validates.

Each target is a *member*: it reads the chunks in order and leaves when it is done or has
failed. A member's failure is its own; the producer's failure (the source's export,
download or validation) is every member's, as none of them can get the document.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from . import exchange
from .errors import BadRequest, Cancelled, ExchangeFormatError, ProtocolError
from .exchange.leftout import LeftOut, find_element, guid_named, without_element
from .replica import Replica
from .repository import quick

#: No exchange document a run downloads holds more elements than this (a split export);
#: at about 300 bytes per job, some 15 MB uncompressed.
CHUNK_ELEMENTS = 50_000
#: The first chunk of a split export is smaller: the targets' imports begin once it is
#: validated, while the source exports the next chunk (a first chunk of CHUNK_ELEMENTS
#: kept every target idle for the time of one large export and its validation).
FIRST_CHUNK_ELEMENTS = 10_000
#: How many chunks the producer may have ready beyond the slowest member's.
LOOKAHEAD = 2
#: How many elements one chunk's import may leave out, one per refusal, before the
#: refusal fails the direction (each costs a rewrite and an upload of the chunk).
LEAVE_OUT_LIMIT = 3


@dataclass
class Chunk:
    """One downloaded, validated chunk: the file to upload (``None`` when empty)."""

    index: int
    path: Optional[str]
    count: int
    gzip: bool


class Feed:
    """The chunks of one export, produced once for *members* targets.

    :param open_source: opens a replica on the source (the producer's own; closed after).
    :param cancelled: tells the producer to stop at the next chunk.
    :param gzip_level: uploads are gzip-compressed at this zlib level (0: not).
    :param empty_at: the source was counted to hold nothing in the window at this
        generation: the feed is one empty chunk covering it, and no export is asked for.
    :param sync_seqs: the sender's sequence bump of the members' node rows on the
        source (name: number), asked with the first export when the source takes it
        (``marks_exports``); :attr:`marked` then names the rows it bumped.
    """

    def __init__(
        self,
        open_source: Callable[[], Replica],
        since_gen: int,
        exclude_via: Optional[str],
        label: str,
        members: int,
        workdir: str,
        cancelled: Callable[[], bool],
        gzip_level: int = 1,
        chunk_elements: Optional[int] = None,
        empty_at: Optional[int] = None,
        sync_seqs: Optional[Mapping[str, int]] = None,
    ) -> None:
        self._open_source = open_source
        self._empty_at = empty_at
        self._sync_seqs = dict(sync_seqs) if sync_seqs else None
        #: The rows of :attr:`_sync_seqs` the first export bumped, set before the first
        #: chunk is handed out (empty: none, the members bump theirs themselves).
        self.marked: Dict[str, int] = {}
        self.since_gen = since_gen
        self.exclude_via = exclude_via
        self.label = label
        self._workdir = workdir
        self._cancelled = cancelled
        self._gzip_level = gzip_level
        self._chunk_elements = chunk_elements or CHUNK_ELEMENTS
        self._cond = threading.Condition()
        self._chunks: List[Chunk] = []
        self._position: Dict[int, int] = {m: 0 for m in range(members)}  # next chunk each
        self._started: Set[int] = set()  # members that have begun reading
        self._finished = False
        self._error: Optional[BaseException] = None
        self.generation: Optional[int] = None
        self.exports = 0  # export calls made on the source
        self._skipped: List[LeftOut] = []  # what the source's exports left out
        self._thread: Optional[threading.Thread] = None

    # -- the producer -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._produce, name=f"feed {self.label}", daemon=True
            )
            self._thread.start()

    def join(self) -> None:
        """Wait for the producer and remove every chunk file left."""
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            for chunk in self._chunks:
                _remove(chunk)

    def _produce(self) -> None:
        if self._empty_at is not None:
            with self._cond:
                self.generation = self._empty_at
                self._chunks.append(Chunk(0, None, 0, False))
                self._finished = True
                self._cond.notify_all()
            return
        try:
            source = self._open_source()
            try:
                self._export_all(source)
            finally:
                source.close()
        except BaseException as exc:  # every member gets the producer's failure
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        else:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _export_all(self, source: Replica) -> None:
        splits = bool(getattr(source, "splits_exports", False))
        if not self._wait_for_room():
            return  # every member has left
        if self._cancelled():
            raise Cancelled("cancelled before this step")
        info = self._export(source, splits, None)
        self.generation = int(info.generation)
        if self._sync_seqs is not None:
            marked = getattr(info, "sync_seq_marked", None) or ()
            self.marked = {n: self._sync_seqs[n] for n in marked if n in self._sync_seqs}
        ahead: Optional[_Ahead] = None
        try:
            while True:
                following: Optional[Future[Any]] = None
                if splits and getattr(info, "more", False):
                    # The next chunk's export runs on the source while this one is
                    # downloaded, validated and compressed here.
                    if self._cancelled():
                        raise Cancelled("cancelled before this step")
                    ahead = ahead or _Ahead(self._open_source)
                    following = ahead.ask(partial(self._export, splits=True, after=info.after))
                chunk = self._fetch(source, info, len(self._chunks))
                with self._cond:
                    self._skipped.extend(getattr(info, "skipped", None) or ())
                    self._chunks.append(chunk)
                    self._cond.notify_all()
                if following is None:
                    return
                info = following.result()
                if int(info.generation) != self.generation:
                    raise ProtocolError(
                        f"{self.label}: a chunk of a split export covers generation "
                        f"{info.generation}, the first one {self.generation}",
                        source.display_url,
                    )
                if not self._wait_for_room():
                    return  # every member has left
        finally:
            if ahead is not None:
                ahead.close()

    def _export(self, source: Replica, splits: bool, after: Optional[str]) -> Any:
        """One export call: the first carries the sequence marks and, split, asks for a
        smaller chunk (:data:`FIRST_CHUNK_ELEMENTS`) so that the imports start early."""
        self.exports += 1
        first = self.exports == 1
        export: Any = source.export  # the split export's keywords are optional
        options: Dict[str, Any] = {}
        if self._sync_seqs is not None and first:
            if getattr(source, "marks_exports", False):
                options["sync_seqs"] = self._sync_seqs
        if splits:
            size = (
                min(FIRST_CHUNK_ELEMENTS, self._chunk_elements) if first else self._chunk_elements
            )
            options.update(max_count=size, until_gen=self.generation, after=after)
        return export(self.since_gen, self.exclude_via, **options)

    def _fetch(self, source: Replica, info: Any, index: int) -> Chunk:
        """Download, validate and compress one chunk."""
        if int(getattr(info, "count", 0)) == 0:
            return Chunk(index, None, 0, False)
        fd, path = tempfile.mkstemp(suffix=".jxl", dir=self._workdir)
        try:
            with os.fdopen(fd, "wb") as handle:
                source.download(info.jxl_url, handle)
            header, count = validate(path)
            if header.generation != int(info.generation):
                raise ProtocolError(
                    f"{self.label}: export document covers generation {header.generation}, "
                    f"the server announced {info.generation}",
                    source.display_url,
                )
            if count == 0:
                return Chunk(index, None, 0, False)
            if not self._gzip_level:
                keep, path = path, ""
                return Chunk(index, keep, count, False)
            exchange.gzip_file(path, path + ".gz", compresslevel=self._gzip_level)
            return Chunk(index, path + ".gz", count, True)
        except BaseException:
            if os.path.exists(path + ".gz"):
                os.unlink(path + ".gz")
            raise
        finally:
            if path and os.path.exists(path):
                os.unlink(path)

    def _wait_for_room(self) -> bool:
        """Wait until the slowest member that has started reading is at most LOOKAHEAD
        chunks behind; False when no member is left.

        Members that have not started (their task waits for a worker of a bounded pool,
        maybe behind another member of this feed) are not waited for, or the two would
        wait for each other: their chunks stay on disk until they have read them.
        """
        with self._cond:
            while True:
                if not self._position:
                    return False
                reading = [i for m, i in self._position.items() if m in self._started]
                if len(self._chunks) - min(reading, default=0) < LOOKAHEAD:
                    return True
                self._cond.wait()

    # -- the members ------------------------------------------------------------------

    def chunks(self, member: int) -> Iterator[Chunk]:
        """The chunks in order, for *member*; raises the producer's failure."""
        with self._cond:
            self._started.add(member)
            self._cond.notify_all()
        while True:
            with self._cond:
                while True:
                    index = self._position.get(member)
                    if index is None:
                        return
                    if index < len(self._chunks):
                        chunk = self._chunks[index]
                        break
                    if self._error is not None:
                        raise self._error
                    if self._finished:
                        return
                    self._cond.wait()
            yield chunk
            with self._cond:
                if member in self._position:
                    self._position[member] = index + 1
                    self._release()

    @property
    def skipped(self) -> List[LeftOut]:
        """The elements the source left out of the chunks made so far (all of them once
        a member has read every chunk): they cannot travel (docs/design.md §4)."""
        with self._cond:
            return list(self._skipped)

    def leave(self, member: int) -> None:
        """*member* is done (or failed): the producer no longer waits for it."""
        with self._cond:
            self._position.pop(member, None)
            self._release()

    def leave_all(self) -> None:
        """Every member leaves: the producer stops at its next chunk."""
        with self._cond:
            self._position.clear()
            self._release()

    def _release(self) -> None:
        """Remove the files every remaining member has read (under the lock)."""
        low = min(self._position.values(), default=len(self._chunks))
        for chunk in self._chunks[:low]:
            _remove(chunk)
        self._cond.notify_all()


class _Ahead:
    """One thread asking the source for the next chunk's export, on a replica of its own,
    while the producer downloads and validates the current chunk."""

    def __init__(self, open_source: Callable[[], Replica]) -> None:
        self._open_source = open_source
        self._replica: Optional[Replica] = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export ahead")

    def ask(self, export: Callable[[Replica], Any]) -> Future[Any]:
        return self._pool.submit(self._run, export)

    def _run(self, export: Callable[[Replica], Any]) -> Any:
        if self._replica is None:
            self._replica = self._open_source()
        return export(self._replica)

    def close(self) -> None:
        """Wait for an export in flight, then close the replica."""
        self._pool.shutdown(wait=True)
        if self._replica is not None:
            self._replica.close()


def import_chunk(
    target: Replica,
    chunk: Chunk,
    workdir: str,
    left_out: List[LeftOut],
    import_lock: Optional[threading.Lock] = None,
    sender_mark: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Import *chunk* into *target*; when the target refuses the document naming one
    element of it (a 400 naming its GUID, or the line it is on), import it again
    without that element, which is added to *left_out* (docs/design.md §4, "What the
    exchange carries"). At most :data:`LEAVE_OUT_LIMIT` elements a chunk.

    A refused import changed nothing (imports are atomic), so importing the rest is
    safe; the caller keeps the direction's watermark, so the next run retries what was
    left out.

    :param sender_mark: extra arguments of every import attempt (``peer`` and
        ``peer_seq``: the sender's sequence number the target records with the import).
    :returns: the import's answer.
    :raises BadRequest: a refusal that names no element of the chunk, or one too many.
    """
    assert chunk.path is not None
    path, copies = chunk.path, []
    try:
        for attempt in range(LEAVE_OUT_LIMIT + 1):
            try:
                mark = dict(sender_mark or {})
                if import_lock is None:
                    return target.import_document(path, merge=True, gzip=chunk.gzip, **mark)
                with import_lock:
                    return target.import_document(path, merge=True, gzip=chunk.gzip, **mark)
            except BadRequest as refusal:
                index = -1 if attempt == LEAVE_OUT_LIMIT else _refused_element(path, refusal)
                if index < 0:
                    raise
                copy, element = without_element(path, index, workdir, packed=chunk.gzip)
                copies.append(copy)
                path = copy
                why = "; ".join([refusal.message, *refusal.details])
                left_out.append(LeftOut.of(element, f"the receiving server refused it: {why}"))
        raise AssertionError("unreachable")  # the last attempt returns or raises
    finally:
        for copy in copies:
            if os.path.exists(copy):
                os.unlink(copy)


def _refused_element(path: str, refusal: BadRequest) -> int:
    """The position of the element of the document at *path* a refusal names: by its
    GUID, or by the line the server's reader stopped on (``line N`` in the details,
    with an ``element`` detail that is not the root); -1 when it names none."""
    if not refusal.message.startswith(_DOCUMENT_REFUSALS):
        return -1
    try:
        # The line first: a message may quote a GUID the element refers to.
        details = {d.partition(" ")[0]: d.partition(" ")[2] for d in refusal.details}
        line, tag = details.get("line", ""), details.get("element", "")
        if line.isdigit() and tag.strip("<>") not in ("", exchange.ROOT):
            return find_element(path, line=int(line))
        guid = guid_named(refusal.message)
        if guid is not None:
            return find_element(path, guid=guid)
    except ExchangeFormatError:
        pass  # not a document this client can read again: no element to leave out
    return -1


# How the emulator's import begins a refusal of the document (docs/protocol.md).
_DOCUMENT_REFUSALS = ("Invalid exchange document", "Document refused")


def validate(path: str) -> Tuple[exchange.ExchangeHeader, int]:
    """The header and element count of a valid document at *path*.

    Read first by the quick reader the emulator's import uses (about 15 µs an element
    against 35-40 µs, docs/performance.md); a document it cannot vouch for
    (:class:`~wmsync.repository.quick.NotCertain`) goes to the reference reader, which
    accepts it or raises the reference error (:class:`~wmsync.errors.ExchangeFormatError`,
    with line and element).
    """
    try:
        with quick.read_records(path) as records:
            count = sum(len(batch) for batch in records.batches())
            return records.header, count
    except quick.NotCertain:
        return exchange.validate_file(path)


def _remove(chunk: Chunk) -> None:
    if chunk.path is not None:
        try:
            os.unlink(chunk.path)
        except FileNotFoundError:
            pass
        chunk.path = None
