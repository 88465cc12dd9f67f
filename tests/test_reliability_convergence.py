"""Convergence under faults, as a property (hypothesis): nothing lost, nothing duplicated.

Every example builds a fresh cluster (a parent and 1-4 children, each with its own clock
offset of 0 or +/- 1 hour) behind real loopback servers, registers it with one clean
run, then plays a random program of steps:

- users create, edit and delete jobs, holds, job types, users and the default group on
  any node through the REST API, write job descriptions with text XML 1.0 cannot hold
  (U+000B, NUL, U+0001 ..., CR LF, a lone CR, U+FFFE/U+FFFF, a lone surrogate sent as a
  JSON escape) and 100,000-character notes;
- synchronization runs with random failures injected at any stage of any node (a server
  down, a timeout, a 500 envelope, HTTP 500, a dropped connection, a truncated or
  mislabelled or HTML answer, and "the process was killed" between an import and its
  watermark commit or between the pull and the push), the parent name and the table's
  repository names typed as the servers spell them or in lower, upper or swapped case;
- setbacks (docs/design.md §4, "Restores and rebuilds"): a node's database backed up with
  SQLite's backup API while its server runs; later restored from that copy, either with
  the server stopped, its files replaced and the server started again on the same port,
  or written back into the live file with the backup API while it runs; or the node
  rebuilt empty under its name (new database, same name, same URL).

Then ONE fault-free run, and the invariants must hold. One is what the design needs,
restores included: a run checks every pair for a restore or rebuild while preparing it,
before anything moves; the side that went back takes its new incarnation and re-stamps
its changes there, and the same run exchanges that pair in full both ways. Every pull
comes before any push, so whatever a pull resolves on the parent (a re-stamped edit
meeting a version the restore lost) reaches every child in that run's push. A second
run is needed only when the first cannot finish both directions, which a fault-free run
always can. A further run must then move nothing.

- every node holds the same elements: same GUIDs, content and version vectors
  (``Store.fingerprint()``), hence the same conflict winners everywhere;
- no edit lost, judged by content lineage (:class:`Lineage`): every user write (recorded
  by diffing the node's store around each edit, with the content it was made on top
  of) is the final version of its element or lies below it, or is (or lies below) a
  version some conflict log logged as a loser. Writes that a restore or rebuild took
  legitimately are left out, exactly those no other node held just before it (see
  :class:`Setbacks`). Without setbacks, version vectors are exact as well: every
  recorded version is covered by the final vector and every maximal one is the final
  content or a logged loser;
- the final content is one a user wrote (or the initial one, or one a rebuild made
  anew); no element appears from nowhere or disappears;
- no resurrected delete: a job whose delete was confirmed (held by the parent and another
  node after a run) is deleted at the end, unless the delete is a logged loser (a
  concurrent edit, newer by the rule, revived the job);
- one id per job: every job GUID, deleted ones too, has the same id on every node, and
  no id names two jobs on a node; live job names (unique tokens) are unique;
- typed spellings never reach node rows, version vectors or ``via``;
- text with control characters and long notes read back identical, through the REST API
  on every node, wherever their version is the final one (and the writing node stored
  exactly what was sent).
- holds and activity records follow their job: none is live on a deleted job, and none
  deleted with its job stays deleted when the job is live (a repository's automatic
  edits that do this count in the place of the user's version they flip);

Servers are started once per test and reused: each example swaps a fresh application
(new SQLite files) in behind them. ``WMSYNC_EXAMPLES=N`` sets the example count
(default 20); ``WMSYNC_SEED=N`` picks other programs (the default ones are fixed);
``WMSYNC_LONG=1`` means 10,000 with random seeds. Tallies go to the JSON
file named by ``WMSYNC_RELIABILITY_JSON`` (in long mode by default
``benchmarks/results/reliability.json``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.app import EmulatorConfig, Fault, create_app
from wmsync.emulator.server import QuietRequestHandler, RunningEmulator, root_url
from wmsync.model import EQUAL, OLDER, Element, compare_vv
from wmsync.report import child_line

LONG = os.environ.get("WMSYNC_LONG", "") not in ("", "0")
SEED = os.environ.get("WMSYNC_SEED")  # other fixed programs in short mode
EXAMPLES = int(os.environ.get("WMSYNC_EXAMPLES") or (10_000 if LONG else 20))
# Long mode runs hypothesis in rounds of CHUNK examples, each with a fresh random seed,
# until EXAMPLES have passed or WMSYNC_LONG_SECONDS of wall time are used up.
CHUNK = min(EXAMPLES, 100) if LONG else EXAMPLES
BUDGET = float(os.environ.get("WMSYNC_LONG_SECONDS") or "inf")
REPORT_PATH = os.environ.get("WMSYNC_RELIABILITY_JSON") or (
    str(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "reliability.json")
    if LONG
    else ""
)
NAMES = ["Parent", "Ohio", "AZ", "Utah", "Maine"]
USER = "tester"
HOUR = 3_600_000
# Opt-in, to look past the reported restore gap (see the xfail test at the end): no
# restore of a node whose last run failed for it after its backup (an import may have
# reached its partner unconfirmed, and such a restore is never found).
AVOID_UNCONFIRMED_RESTORES = os.environ.get("WMSYNC_AVOID_UNCONFIRMED_RESTORES", "") == "1"
T_CALL, T_TRANSFER = 0.3, 0.6  # the faulty runs' client timeouts (seconds)
QUIET_DEADLINE = 15.0

STAGES = {  # regular expressions over the path below the service root
    "info": "replication/info",
    "export": "replication/export$",
    "download": "replication/exports/",
    "import": "replication/import",
    "nodes": "replication/nodes/update",
}
FAULT_KINDS = [
    "down",
    "timeout",
    "error",
    "http500",
    "drop",
    "truncate",
    "html",
    "wrongtype",
    "kill_pull_commit",
    "kill_between",
    "kill_push_commit",
]
EDITS = [
    "job_create",
    "job_create",
    "job_edit",
    "job_edit",
    "job_notes",
    "job_delete",
    "hold_create",
    "hold_release",
    "type_create",
    "type_edit",
    "user_create",
    "user_edit",
    "group_edit",
    "job_control_text",
    "job_long_notes",
]
# Setbacks (docs/design.md §4, "Restores and rebuilds"): a backup taken while the server
# runs, a restore of the node's last backup (server stopped and started again on the
# same port, or written back into the live file), a rebuild empty under the same name.
SETBACKS = ["backup", "backup", "restore_offline", "restore_in_place", "rebuild"]
# How a run's parent name and table rows are typed: as the servers spell them, or not.
CASES = [None, None, "lower", "upper", "swap"]
# Text the REST API accepts that XML 1.0 cannot hold: control characters (U+000B, the
# vertical tab Word writes for a manual line break; NUL; U+0001 ...), CR LF and a lone
# CR, non-characters, and a lone surrogate (sent as a JSON \uXXXX escape).
CONTROL_TEXT = "\x0b\x00\x01\x08\x1f\x7f\x85\r\n\r\t\ufffe\uffff\ud800"
LONG_NOTES_CHARS = 100_000
TEXT_FIELDS = {"job_control_text": "description", "job_long_notes": "notes"}


# ---------------------------------------------------------------------------
# Servers that outlive examples; applications (databases) that do not


class Gate:
    """A WSGI front that forwards to the current example's application, and counts the
    requests being handled (so an example can wait for late, timed-out requests)."""

    def __init__(self) -> None:
        self.inner: Any = None
        self._cond = threading.Condition()
        self.inflight = 0
        gate = self

        class Counted(QuietRequestHandler):
            # Counted around the whole handler: werkzeug may skip the body's close()
            # when the client has gone (a timeout, a drop).
            def handle(self) -> None:
                with gate._cond:
                    gate.inflight += 1
                try:
                    super().handle()
                finally:
                    with gate._cond:
                        gate.inflight -= 1
                        gate._cond.notify_all()

        self.handler = Counted

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        return self.inner(environ, start_response)

    def wait_quiet(self, deadline: float) -> None:
        with self._cond:
            while self.inflight:
                left = deadline - time.monotonic()
                assert left > 0, "requests still in flight after the deadline"
                self._cond.wait(left)


class Node:
    """One repository name served on a fixed loopback port for the whole test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = Gate()
        self.app: Any = None
        self.port = 0
        self.running: Optional[RunningEmulator] = None
        self.url = ""
        self.db_path = Path()
        self.offset = 0

    def fresh(self, db_path: Path, clock_offset_ms: int) -> None:
        self.db_path, self.offset = db_path, clock_offset_ms
        self.app = create_app(
            EmulatorConfig(
                repository=self.name, db_path=str(db_path), clock_offset_ms=clock_offset_ms
            )
        )
        self.gate.inner = self.app
        if self.running is None:
            self.up()

    # -- setbacks (the server keeps its port) ----------------------------------------

    def backup(self, dest: Path) -> Path:
        """A consistent copy of the live database, made with SQLite's backup API."""
        sqlite_copy(self.db_path, dest)
        return dest

    def restore_offline(self, copy: Path) -> None:
        """Stop the server, put the copy back in place of its files (``-wal``/``-shm``
        removed), start it again on the same port."""
        self._replace_files(copy)

    def restore_in_place(self, copy: Path) -> None:
        """Write the copy back into the live file with the backup API while it runs."""
        sqlite_copy(copy, self.db_path)

    def rebuild(self) -> None:
        """Stop the server and start it on a new, empty database under the same name."""
        self._replace_files(None)

    def _replace_files(self, copy: Optional[Path]) -> None:
        self.down()
        self.gate.wait_quiet(time.monotonic() + QUIET_DEADLINE)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        if copy is not None:
            self.db_path.write_bytes(copy.read_bytes())
        self.fresh(self.db_path, self.offset)  # a new application over the files

    @property
    def store(self) -> Any:
        return self.app.store

    def up(self) -> None:
        for attempt in range(50):  # the port of a stopped server is free again at once
            try:
                server = make_server(
                    "127.0.0.1",
                    self.port,
                    self.gate,
                    threaded=True,
                    request_handler=self.gate.handler,
                )
                break
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.05)
        self.port = int(server.server_address[1])
        self.url = root_url("127.0.0.1", self.port, self.name)
        running = RunningEmulator(server, self.app, self.url)
        running.start(10.0)
        self.running = running

    def down(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None

    def faults(self) -> List[Fault]:
        return self.app.faults  # type: ignore[no-any-return]


def sqlite_copy_to(source_path: Any, dest_path: Path) -> Path:
    sqlite_copy(Path(source_path), dest_path)
    return dest_path


def sqlite_copy(source_path: Path, dest_path: Path) -> None:
    """Copy one SQLite database into another with the backup API (both may be live)."""
    source = sqlite3.connect(str(source_path))
    target = sqlite3.connect(str(dest_path))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


@dataclass(frozen=True)
class Write:
    """One local version a node wrote (a user's edit or its side effects)."""

    guid: str
    kind: str
    node: str
    vv: Dict[str, int]
    content: str  # content hash
    deleted: bool
    fields: Tuple[Tuple[str, str], ...]
    base: Optional[str] = None  # content hash the node held before the edit (None: new)


TALLY: Counter = Counter()
# Counted in every report, zero or not (the setbacks, typed names and texts included).
ALWAYS_REPORTED = (
    "changes_lost",
    "duplicates",
    "resurrected_deletes",
    "backups",
    "restores_offline",
    "restores_in_place",
    "rebuilds",
    "writes_taken_by_setbacks",
    "deletes_confirmed",
    "case_renamed_runs",
    "control_char_texts",
    "long_notes",
    "texts_read_back_everywhere",
)


class Example:
    """One example's cluster, REST clients and record of writes."""

    def __init__(self, nodes: List[Node], root: Path, offsets: List[int]) -> None:
        self.nodes = nodes
        self.root = root
        root.mkdir(parents=True)
        for node, offset in zip(nodes, offsets):
            node.fresh(root / f"{node.name}.sqlite", offset)
        self.clients = {n.name: WMServerClient(n.url, user=USER) for n in nodes}
        self.writes: List[Write] = []
        self.initial = {g: v for g, v in nodes[0].store.fingerprint().items()}
        self.table = ";".join(f"{n.name} true {n.url} ''" for n in nodes[1:])
        self.tokens = itertools.count()
        self.user_pool = ["u0", "u1", "u2"]
        self.setbacks = Setbacks()
        self.texts: List[Tuple[int, str, str]] = []  # (write index, field, text sent)
        self._sent_text = ""

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def token(self, what: str) -> str:
        return f"{what}-{next(self.tokens)}"

    @property
    def parent(self) -> Node:
        return self.nodes[0]

    # -- runs ------------------------------------------------------------------

    def sync(
        self, factory: Optional[Callable[[str], Any]] = None, case: Optional[str] = None
    ) -> Any:
        """One run; *case* types the parent name and the table's names in another case."""
        table = typed_table(self.table, case)
        result = synchronize(
            self.parent.url, typed("Parent", case), table, user=USER, client_factory=factory
        )
        if result.status >= 0 and result.last_sync_text:
            self.table = result.last_sync_text  # chained, as ModelBuilder does
        self.setbacks.after_run(self, result)
        return result

    def wait_quiet(self) -> None:
        deadline = time.monotonic() + QUIET_DEADLINE
        for node in self.nodes:
            node.gate.wait_quiet(deadline)

    # -- edits -----------------------------------------------------------------

    def edit(self, node: Node, op: str, pick: int) -> None:
        """Make one user edit on *node* and record every version it wrote."""
        before = node.store.fingerprint()
        done = self._edit(node, op, pick)
        after = node.store.fingerprint()
        changed = [g for g, v in after.items() if before.get(g) != v]
        assert bool(changed) == done, (op, changed)
        for guid in changed:
            element = node.store.get(guid).element
            self.writes.append(
                Write(
                    guid,
                    element.kind,
                    node.name,
                    dict(element.vv),
                    element.content_hash(),
                    element.deleted,
                    tuple(sorted(element.fields.items())),
                    before[guid][1] if guid in before else None,
                )
            )
        if done and op in TEXT_FIELDS:
            self.record_text(node, op, changed)
        TALLY["edits"] += int(done)
        TALLY["versions_written"] += len(changed)

    def _live(self, node: Node, kind: str) -> List[Any]:
        return [e for e in node.store.elements(include_deleted=False) if e.kind == kind]

    def _edit(self, node: Node, op: str, pick: int) -> bool:
        client = self.clients[node.name]
        jobs = self._live(node, "Job")
        job = jobs[pick % len(jobs)] if jobs else None
        if op == "job_create":
            client.post(
                "jobs/create", jobTypeId=1, name=self.token("job"), description=self.token("d")
            )
        elif op in ("job_edit", "job_notes", "job_delete", "hold_create") and job is None:
            return False
        elif op == "job_edit":
            client.post(
                f"jobs/{job.local_id}/update",
                properties=json.dumps({"description": self.token("d")}),
            )
        elif op == "job_notes":
            client.post(f"jobs/{job.local_id}/notes/update", notes=self.token("n"))
        elif op == "job_delete":
            client.post(f"jobs/{job.local_id}/delete")
        elif op == "hold_create":
            client.post(f"jobs/{job.local_id}/holds/create", type=1, comments=self.token("h"))
        elif op == "hold_release":
            live_jobs = {j.guid for j in jobs}
            holds = [
                h
                for h in self._live(node, "Hold")
                if not h.fields.get("releaseDate") and h.fields.get("job") in live_jobs
            ]
            if not holds:
                return False
            hold = holds[pick % len(holds)]
            owner = next(j for j in jobs if j.guid == hold.fields["job"])
            client.post(
                f"jobs/{owner.local_id}/holds/{hold.local_id}/release", comments=self.token("r")
            )
        elif op == "type_create":
            client.post("jobTypes/create", name=self.token("type"), description=self.token("d"))
        elif op == "type_edit":
            types = self._live(node, "JobType")
            chosen = types[pick % len(types)]
            client.post(f"jobTypes/{chosen.local_id}/update", description=self.token("d"))
        elif op == "user_create":
            name = self.user_pool[pick % len(self.user_pool)]
            if any(u.fields.get("userName") == name for u in self._live(node, "User")):
                return False  # known here already: the same name elsewhere is the same user
            client.post("community/users/create", userName=name, fullName=self.token("f"))
        elif op == "user_edit":
            users = self._live(node, "User")
            chosen = users[pick % len(users)]
            client.post(
                f"community/users/{chosen.fields['userName']}/update", fullName=self.token("f")
            )
        elif op == "group_edit":
            client.post("community/groups/1/update", description=self.token("g"))
        elif op in TEXT_FIELDS:
            if job is None:
                return False
            self._sent_text = self.text_for(op)
            if op == "job_control_text":  # JSON: the lone surrogate goes as an escape
                client.post(
                    f"jobs/{job.local_id}/update",
                    properties=json.dumps({"description": self._sent_text}),
                )
            else:
                client.post(f"jobs/{job.local_id}/notes/update", notes=self._sent_text)
        else:  # pragma: no cover
            raise AssertionError(op)
        return True

    # -- text XML 1.0 cannot hold, and long notes -------------------------------

    def text_for(self, op: str) -> str:
        if op == "job_control_text":
            return f"{self.token('c')}{CONTROL_TEXT}"
        head = self.token("long")
        return head + ("notes\x0b" * LONG_NOTES_CHARS)[: LONG_NOTES_CHARS - len(head)]

    def record_text(self, node: Node, op: str, changed: List[str]) -> None:
        """Remember the text sent; the node stored exactly that (the API changed nothing)."""
        field = TEXT_FIELDS[op]
        first = len(self.writes) - len(changed)
        index = next(i for i in range(first, len(self.writes)) if self.writes[i].kind == "Job")
        stored = dict(self.writes[index].fields).get(field)
        assert stored == self._sent_text, f"{node.name} stored another {field} than sent"
        self.texts.append((index, field, self._sent_text))
        TALLY["control_char_texts" if op == "job_control_text" else "long_notes"] += 1

    # -- setbacks --------------------------------------------------------------

    def setback(self, what: str, node: Node) -> None:
        """A backup, a restore of the node's last backup, or a rebuild; see :class:`Setbacks`."""
        self.setbacks.act(self, what, node)

    # -- faults ----------------------------------------------------------------

    def arm(self, spec: Tuple[str, int, str, Optional[int]]) -> Callable[[], int]:
        """Inject one fault for the next run; returns a function counting its hits."""
        kind, target, stage, times = spec
        node = self.nodes[target % len(self.nodes)]
        child = self.nodes[1 + target % (len(self.nodes) - 1)]
        if kind == "down":
            node.down()
            return lambda: 1
        if kind == "kill_pull_commit":  # dies after the parent's import, before the mark
            fault = Fault(STAGES["nodes"], "drop")
            child.faults().append(fault)
            return lambda: min(fault.hits, 1)
        if kind in ("kill_between", "kill_push_commit"):
            stage_re = STAGES["export"] if kind == "kill_between" else STAGES["nodes"]
            fault = Fault(stage_re, "drop")
            self.parent.faults().append(fault)
            return lambda: min(fault.hits, 1)
        if kind == "timeout":
            slow = T_TRANSFER if stage in ("export", "download", "import") else T_CALL
            fault = Fault(STAGES[stage], "latency", seconds=slow + 0.35, times=times)
        elif kind == "wrongtype" and stage == "download":
            fault = Fault(STAGES[stage], kind, times=times, content_type="application/json")
        else:
            fault = Fault(STAGES[stage], kind, times=times)
        node.faults().append(fault)
        return lambda: fault.hits

    def disarm(self) -> None:
        for node in self.nodes:
            for fault in node.faults():
                fault.release()  # sleeping requests go on at once (late, as after a timeout)
            node.faults().clear()
            if node.running is None:
                node.up()
        self.wait_quiet()


def faulty_client(url: str) -> WMServerClient:
    return WMServerClient(
        url, user=USER, timeout=T_CALL, transfer_timeout=T_TRANSFER, retries=2, backoff=0.01
    )


# ---------------------------------------------------------------------------
# Setbacks, and which writes descend from which


def loser_key(entry: Dict[str, Any]) -> Tuple[str, str]:
    """(GUID, content hash) of a conflict log entry's losing version."""
    loser = entry["loser"]
    version = Element(
        entry["kind"], entry["guid"], {}, 0, "", loser["content"], bool(loser.get("deleted"))
    )
    return entry["guid"], version.content_hash()


class Lineage:
    """Which recorded writes a version descends from, judged by content, never by
    version vectors (a restored node reuses its counters until a run finds the restore,
    and a re-stamp rewrites them).

    Every user write has content no other write of that element has (unique tokens;
    only tombstones repeat, and any tombstone of an element stands for any other), and
    records its *base*: the content its node held before the edit. A version's ancestry
    is the write(s) with its content and, through their bases, everything they were
    made on top of.
    """

    def __init__(self, writes: List[Write]) -> None:
        self.writes = writes
        self.by_content: Dict[Tuple[str, str], List[int]] = {}
        for index, write in enumerate(writes):
            self.by_content.setdefault((write.guid, write.content), []).append(index)
        self._memo: Dict[Tuple[str, str], FrozenSet[int]] = {}

    def ancestry(self, guid: str, content: str) -> FrozenSet[int]:
        key = (guid, content)
        if key not in self._memo:
            self._memo[key] = frozenset()  # no cycle can loop forever
            found: Set[int] = set()
            for index in self.by_content.get(key, []):
                found.add(index)
                base = self.writes[index].base
                if base is not None:
                    found |= self.ancestry(guid, base)
            self._memo[key] = frozenset(found)
        return self._memo[key]

    def held(self, prints: Dict[str, Tuple[str, str, str]]) -> Set[int]:
        """The writes a node with these fingerprints holds (as its version or below it)."""
        found: Set[int] = set()
        for guid, (_kind, content, _vv) in prints.items():
            found |= self.ancestry(guid, content)
        return found

    def logged(self, losers: Set[Tuple[str, str]]) -> Set[int]:
        """The writes some logged loser holds."""
        found: Set[int] = set()
        for guid, content in losers:
            found |= self.ancestry(guid, content)
        return found


class Setbacks:
    """Backups, restores and rebuilds in one example, and what they legitimately take.

    A restore puts a node back to its last backup; a rebuild to an empty database. Both
    take away what the node held that its backup did not. That is legitimate exactly
    for the writes that *no other node held* just before the setback: held meaning the
    write is a node's current version of its element or lies below it (the node's
    version descends from it, see :class:`Lineage`), or a conflict log ever logged it or
    a version on top of it as a loser. A write another node held must survive: the next
    runs bring it back to the restored node (or log it, when an edit made after the
    restore beats it). "Received" is judged as "still held": a node that received the
    write and was itself restored since no longer has it, and counts for nothing. A
    write nobody held even before the setback is not excused (something already lost
    it: the final check says so).

    Conflict logs are snapshotted after every run and before every setback, and the
    losers add up: a restore takes back a node's log with its data, but a version that
    once lost a conflict was not lost by the product (the rule that decided it depends
    only on the two versions, so every node decides alike).

    A delete is *confirmed* once, after a run, the parent and at least one other node
    hold the job deleted (the delete was synchronized from or to the parent).
    """

    def __init__(self) -> None:
        self.backups: Dict[str, Path] = {}
        self.count = 0  # restores and rebuilds done
        self.dropped: Set[int] = set()  # writes the setbacks legitimately took
        self.losers: Set[Tuple[str, str]] = set()  # (guid, content hash) ever logged
        self.rebuilt: Dict[str, Set[str]] = {}  # guid -> contents a rebuild made anew
        self.confirmed_deletes: Set[int] = set()
        self.copies = itertools.count()
        self.unconfirmed: Set[str] = set()  # nodes whose last run failed for them

    def after_run(self, ex: Example, result: Any) -> None:
        self.note_logs(ex)
        self.confirm_deletes(ex)
        if result.status == -1:
            return  # nothing moved
        for child in result.children:
            name = next(n for n in NAMES if n.casefold() == child.name.casefold())
            if child.state == "synchronized":
                self.unconfirmed.discard(name)
            else:
                self.unconfirmed.update((name, "Parent"))
        if result.status == 0:
            self.unconfirmed.discard("Parent")

    def note_logs(self, ex: Example) -> None:
        for node in ex.nodes:
            self.losers.update(loser_key(entry) for entry in node.store.conflicts())

    def confirm_deletes(self, ex: Example) -> None:
        prints = [n.store.fingerprint() for n in ex.nodes]
        for index, write in enumerate(ex.writes):
            if not (write.kind == "Job" and write.deleted) or index in self.dropped:
                continue
            holding = [p for p in prints if p.get(write.guid, ("", "", ""))[1] == write.content]
            if prints[0].get(write.guid, ("", "", ""))[1] == write.content and len(holding) > 1:
                if index not in self.confirmed_deletes:
                    TALLY["deletes_confirmed"] += 1
                self.confirmed_deletes.add(index)

    def act(self, ex: Example, what: str, node: Node) -> None:
        if what == "backup":
            copy = ex.root / f"{node.name}-backup-{next(self.copies)}.sqlite"
            self.backups[node.name] = node.backup(copy)
            self.unconfirmed.discard(node.name)
            TALLY["backups"] += 1
            return
        if what != "rebuild" and node.name not in self.backups:
            return  # nothing to restore from yet
        if what != "rebuild" and AVOID_UNCONFIRMED_RESTORES and node.name in self.unconfirmed:
            TALLY["restores_avoided"] += 1
            return
        ex.wait_quiet()
        self.note_logs(ex)
        lineage = Lineage(ex.writes)
        before = lineage.held(node.store.fingerprint())
        elsewhere = lineage.logged(self.losers)
        for other in ex.nodes:
            if other is not node:
                elsewhere |= lineage.held(other.store.fingerprint())
        if what == "rebuild":
            node.rebuild()
            for guid, (_kind, content, _vv) in node.store.fingerprint().items():
                self.rebuilt.setdefault(guid, set()).add(content)
        elif what == "restore_offline":
            node.restore_offline(self.backups[node.name])
        else:
            node.restore_in_place(self.backups[node.name])
        kept = lineage.held(node.store.fingerprint())
        taken = (before - elsewhere - kept) - self.dropped
        # A restore to a backup taken before an earlier setback brings back what that
        # setback took: those writes are held again, no longer taken.
        self.dropped -= kept
        self.dropped |= taken
        self.count += 1
        TALLY["rebuilds" if what == "rebuild" else f"{what.replace('restore_', 'restores_')}"] += 1
        TALLY["writes_taken_by_setbacks"] += len(taken)


def typed(name: str, case: Optional[str]) -> str:
    """*name* as a user might type it: lower, upper or swapped case."""
    if case == "lower":
        return name.lower()
    if case == "upper":
        return name.upper()
    if case == "swap":
        return name.swapcase()
    return name


def typed_table(table: str, case: Optional[str]) -> str:
    """The child table with each row's name typed in *case* (URLs as they are)."""
    if case is None:
        return table
    rows = []
    for row in table.split(";"):
        name, sep, rest = row.partition(" ")
        rows.append(typed(name, case) + sep + rest)
    return ";".join(rows)


# ---------------------------------------------------------------------------
# The invariants


def not_following_their_job(store: Any) -> List[str]:
    """Holds and activity records that do not follow their job (docs/design.md §4): live
    on a deleted job, or deleted with a job (a tombstone that kept its content) that is
    live."""
    elements = {e.guid: e for e in store.elements()}
    wrong = []
    for e in elements.values():
        job = elements.get(e.fields.get("job", "")) if e.kind in ("Hold", "Activity") else None
        if job is not None and job.deleted != e.deleted:
            state = "deleted" if job.deleted else "live"
            wrong.append(f"{e.kind} {e.guid} deleted={e.deleted} on a {state} job {job.guid}")
    return wrong


def check_invariants(ex: Example) -> Dict[str, int]:
    """Assert convergence, nothing lost and nothing duplicated; return the tallies."""
    prints = {n.name: n.store.fingerprint() for n in ex.nodes}
    reference = prints["Parent"]
    for name, found in prints.items():
        if found != reference:
            differ = sorted(
                g for g in set(found) | set(reference) if found.get(g) != reference.get(g)
            )
            raise AssertionError(
                f"{name} differs from the parent on {len(differ)} "
                f"elements, e.g. {differ[:3]}: "
                f"{[(found.get(g), reference.get(g)) for g in differ[:3]]}"
            )
    final = {e.guid: e.element for e in ex.parent.store.elements()}
    kept = [w for i, w in enumerate(ex.writes) if i not in ex.setbacks.dropped]
    expected = set(ex.initial) | {w.guid for w in kept} | set(ex.setbacks.rebuilt)
    expected |= renumbering_records(final)
    assert set(final) == expected, (
        f"elements appeared {sorted(set(final) - expected)[:3]} "
        f"or vanished {sorted(expected - set(final))[:3]}"
    )
    lost = check_final_contents(ex, final)
    if not ex.setbacks.count:  # counters are never reused: version vectors are exact
        lost += check_version_vectors(ex, final)
    lost += check_lineage(ex, final)
    resurrected = check_deletes_stay_deleted(ex, final)
    duplicates = check_job_ids(ex)
    names = check_canonical_names(ex)
    texts = check_texts_everywhere(ex, final)
    orphans = [f"{n.name}: {o}" for n in ex.nodes for o in not_following_their_job(n.store)]
    tally = {
        "lost": len(lost),
        "duplicates": len(duplicates),
        "conflicts_logged": len(ex.setbacks.losers),
        "resurrected": len(resurrected),
    }
    assert not orphans, orphans[:5]
    assert not lost, lost[:5]
    assert not resurrected, resurrected[:5]
    assert not duplicates, duplicates[:5]
    assert not names, names[:5]
    assert not texts, texts[:5]
    return tally


def check_final_contents(ex: Example, final: Dict[str, Element]) -> List[str]:
    """The final content of every element is one a user wrote (and no setback took), or
    the initial one, or one a rebuild made anew."""
    contents: Dict[str, Set[str]] = {}
    for index, write in enumerate(ex.writes):
        if index not in ex.setbacks.dropped:
            contents.setdefault(write.guid, set()).add(write.content)
    for guid, (_kind, content, _vv) in ex.initial.items():
        contents.setdefault(guid, set()).add(content)
    for guid, made in ex.setbacks.rebuilt.items():
        contents.setdefault(guid, set()).update(made)
    made = renumbering_records(final)
    return [
        f"{guid}: final content was never written by a user"
        for guid, element in final.items()
        if element.content_hash() not in contents.get(guid, set())
        and followed_write(ex, element) is None
        and guid not in made
    ]


RENUMBERED = re.compile(r"Job renumbered from \d+ to \d+ (when joining|because \w+ went back)")


def renumbering_records(final: Dict[str, Element]) -> Set[str]:
    """The activity records the product logs itself when it renumbers a job: a rebuilt
    child's own jobs as it joins again, or a job a repository that went back in time
    gave a taken id (docs/design.md §4): made by a run, not by a user."""
    return {
        guid
        for guid, element in final.items()
        if element.kind == "Activity" and RENUMBERED.match(str(element.fields.get("message") or ""))
    }


def followed_write(ex: Example, element: Element) -> Optional[str]:
    """The content of the user write whose deleted flag a repository flipped to make
    *element* (a hold or activity record following its job, docs/design.md §4: an
    automatic edit made during an import, so not recorded as a write), if any."""
    if element.kind not in ("Hold", "Activity"):
        return None
    fields = tuple(sorted(element.fields.items()))
    for index, write in enumerate(ex.writes):
        if (
            write.guid == element.guid
            and index not in ex.setbacks.dropped
            and write.fields == fields
            and write.deleted != element.deleted
        ):
            return write.content
    return None


def check_version_vectors(ex: Example, final: Dict[str, Element]) -> List[str]:
    """Without setbacks: every recorded version is covered by the final vector, and every
    maximal one is the final content or a logged loser."""
    losers = set()
    for node in ex.nodes:
        for entry in node.store.conflicts():
            loser = entry["loser"]
            losers.add(
                (entry["guid"], bool(loser.get("deleted")), tuple(sorted(loser["content"].items())))
            )
    by_guid: Dict[str, List[Write]] = {}
    for write in ex.writes:
        by_guid.setdefault(write.guid, []).append(write)
    lost: List[str] = []
    for guid, element in final.items():
        writes = by_guid.get(guid, [])
        final_fields = tuple(sorted(element.fields.items()))
        for write in writes:
            if compare_vv(write.vv, element.vv) not in (EQUAL, OLDER):
                lost.append(
                    f"{guid}: version {write.vv} of {write.node} is not in the final {element.vv}"
                )
                continue
            later = any(compare_vv(write.vv, o.vv) == OLDER for o in writes)
            if later or element.content_hash() == write.content:
                continue
            if write.fields == final_fields and write.deleted != element.deleted:
                continue  # followed its job: see above
            if (guid, write.deleted, write.fields) not in losers:
                lost.append(
                    f"{guid}: {write.kind} version {write.vv} written on "
                    f"{write.node} is neither the final one nor a logged loser"
                )
    return lost


def check_lineage(ex: Example, final: Dict[str, Element]) -> List[str]:
    """No edit lost: every write no setback legitimately took (see :class:`Setbacks`) is
    the final version of its element or lies below it, or lies below (or is) a version
    some conflict log once logged as a loser."""
    lineage = Lineage(ex.writes)
    accounted = lineage.logged(ex.setbacks.losers)
    for guid, element in final.items():
        accounted |= lineage.ancestry(guid, element.content_hash())
        flipped = followed_write(ex, element)
        if flipped is not None:  # the write it follows its job from, and below it
            accounted |= lineage.ancestry(guid, flipped)
    return [
        f"{w.guid}: {w.kind} {'delete' if w.deleted else 'version'} {w.vv} written on "
        f"{w.node} is neither the final one, nor below it, nor a logged loser"
        for i, w in enumerate(ex.writes)
        if i not in ex.setbacks.dropped and i not in accounted
    ]


def check_deletes_stay_deleted(ex: Example, final: Dict[str, Element]) -> List[str]:
    """No resurrected delete: a job whose delete was confirmed (and no setback took it)
    is deleted at the end, unless the delete lost a conflict to a concurrent, newer edit
    (then the delete is a logged loser)."""
    found = []
    for index in sorted(ex.setbacks.confirmed_deletes - ex.setbacks.dropped):
        write = ex.writes[index]
        if final[write.guid].deleted or (write.guid, write.content) in ex.setbacks.losers:
            continue
        found.append(
            f"job {write.guid} deleted on {write.node} (confirmed) is live again, "
            "and no conflict log shows its delete losing"
        )
    return found


def check_job_ids(ex: Example) -> List[str]:
    """One id per job: every job GUID, deleted ones too, has the same id on every node,
    and no two job GUIDs share an id on a node; live job names (unique tokens) are
    unique on every node."""
    duplicates: List[str] = []
    ids_everywhere = None
    for node in ex.nodes:
        jobs = [e for e in node.store.elements() if e.kind == "Job"]
        names = Counter(e.fields.get("name") for e in jobs if not e.element.deleted)
        duplicates += [f"{node.name}: job {n!r} x{c}" for n, c in names.items() if c > 1]
        ids = {e.guid: e.local_id for e in jobs}
        if len(set(ids.values())) != len(ids):
            duplicates.append(f"{node.name}: a job id is used by two jobs")
        if ids_everywhere is None:
            ids_everywhere = ids
        elif ids != ids_everywhere:
            differ = [g for g in ids if ids[g] != ids_everywhere.get(g)]
            duplicates.append(
                f"{node.name}: job ids differ from the parent's, e.g. "
                f"{[(ids[g], ids_everywhere.get(g)) for g in differ[:3]]}"
            )
    return duplicates


def check_canonical_names(ex: Example) -> List[str]:
    """Names typed in another case never reach node rows, version vectors or ``via``:
    the servers' own spelling does (incarnations are ``Name~token``)."""
    wrong: List[str] = []
    for node in ex.nodes:
        rows = [row.name for row in node.store.nodes()]
        wrong += [f"{node.name}: node row {r!r}" for r in rows if r not in NAMES]
        if len({r.casefold() for r in rows}) != len(rows):
            wrong.append(f"{node.name}: two node rows for one repository: {rows}")
        for stored in node.store.elements():
            spelled = [k.split("~")[0] for k in stored.element.vv] + [stored.via or "Parent"]
            wrong += [f"{node.name}: {stored.guid} counts {k!r}" for k in spelled if k not in NAMES]
    return wrong


def check_texts_everywhere(ex: Example, final: Dict[str, Element]) -> List[str]:
    """Text with control characters and long notes read back identical, through the
    REST API, on every node, wherever the version that wrote them is the final one."""
    differ: List[str] = []
    for index, field, text in ex.texts:
        write = ex.writes[index]
        element = final.get(write.guid)
        if element is None or element.content_hash() != write.content:
            continue  # taken by a setback, or superseded (then checked as any edit)
        for node in ex.nodes:
            client = ex.clients[node.name]
            if field == "notes":
                got = client.get(f"jobs/{element.local_id}/notes")["notes"]
            else:
                got = client.get(f"jobs/{element.local_id}")[field]
            if got != text:
                differ.append(f"{node.name}: job {element.local_id} {field} differs from sent")
        TALLY["texts_read_back_everywhere"] += 1
    return differ


# ---------------------------------------------------------------------------
# The property


fault_spec = st.tuples(
    st.sampled_from(FAULT_KINDS),
    st.integers(0, 4),
    st.sampled_from(sorted(STAGES)),
    st.sampled_from([1, None]),
)
edit = st.tuples(st.integers(0, 4), st.sampled_from(EDITS), st.integers(0, 1000))
# users at work between runs, often on the same element on several nodes (the same
# pick selects the same element on nodes that hold the same ones): conflicts
edits_step = st.tuples(st.just("edit"), st.lists(edit, min_size=1, max_size=4))
# a run with up to two faults, its names typed as the servers spell them or not
sync_step = st.tuples(st.just("sync"), st.lists(fault_spec, max_size=2), st.sampled_from(CASES))
setback_step = st.tuples(st.just("setback"), st.sampled_from(SETBACKS), st.integers(0, 4))
step = st.one_of(edits_step, sync_step, edits_step, sync_step, setback_step)  # 1 in 5


def test_random_clusters_converge_under_faults_with_nothing_lost(tmp_path_factory):
    base = tmp_path_factory.mktemp("convergence")
    nodes = [Node(name) for name in NAMES]
    counter = itertools.count()
    started = time.monotonic()
    previous: List[Path] = []

    @settings(
        max_examples=CHUNK,
        deadline=None,
        derandomize=not (LONG or SEED),
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(
        children=st.integers(1, 4),
        offsets=st.lists(st.sampled_from([0, 0, HOUR, -HOUR]), min_size=5, max_size=5),
        program=st.lists(step, min_size=2, max_size=12),
    )
    def example(children, offsets, program):
        for old in previous:  # the last example's files: nothing uses them any more
            shutil.rmtree(old, ignore_errors=True)
        previous.clear()
        root = base / f"ex{next(counter)}"
        previous.append(root)
        t0 = time.monotonic()
        ex = Example(nodes[: children + 1], root, offsets)
        try:
            first = ex.sync()
            assert first.status == 0, first.summary_lines()
            for item in program:
                if item[0] == "edit":
                    for target, op, pick in item[1]:
                        ex.edit(ex.nodes[target % len(ex.nodes)], op, pick)
                    continue
                if item[0] == "setback":
                    ex.setback(item[1], ex.nodes[item[2] % len(ex.nodes)])
                    continue
                counters = [ex.arm(spec) for spec in item[1]]
                try:
                    result = ex.sync(faulty_client, item[2])
                finally:
                    ex.disarm()
                TALLY["sync_runs"] += 1
                TALLY["case_renamed_runs"] += int(item[2] is not None)
                TALLY["faults_injected"] += sum(count() for count in counters)
                TALLY["runs_with_failures"] += int(result.status != 0)
                assert -1 <= result.status <= children
                if result.status == -1:
                    assert result.error and "parent" in result.error.lower()
                else:
                    for child in result.children:
                        if child.state == "failed":
                            # Named once, by its line; the error says what failed.
                            assert child.error
                            assert child_line(child).startswith(f"{child.name}: FAILED: ")
            final = ex.sync()
            assert final.status == 0, final.summary_lines()
            tally = check_invariants(ex)
            before = [n.store.generation() for n in ex.nodes]
            again = ex.sync()
            assert again.status == 0, again.summary_lines()
            assert sum(c.sent + c.received for c in again.children) == 0
            assert [n.store.generation() for n in ex.nodes] == before
            TALLY["examples"] += 1
            if os.environ.get("WMSYNC_TRACE"):
                print(
                    f"{time.monotonic() - t0:6.2f}s children={children} program={program}",
                    flush=True,
                )
            TALLY[f"clusters_of_{children + 1}"] += 1
            TALLY["changes_lost"] += tally["lost"]
            TALLY["duplicates"] += tally["duplicates"]
            TALLY["conflicts_logged"] += tally["conflicts_logged"]
            TALLY["resurrected_deletes"] += tally["resurrected"]
        finally:
            ex.close()
            for node in ex.nodes:
                node.faults().clear()
                if node.running is None:
                    node.up()
            ex.wait_quiet()

    if SEED:  # only then: long mode's rounds each take a fresh random seed
        example = seed(int(SEED))(example)

    def write_report(passed):
        if not REPORT_PATH:
            return
        report = {
            "test": "tests/test_reliability_convergence.py",
            "command": "WMSYNC_LONG=1 .venv/bin/python -m pytest -q "
            "tests/test_reliability_convergence.py"
            if LONG
            else "",
            "passed": passed,
            "long_mode": LONG,
            "examples_asked": EXAMPLES,
            "seconds": round(time.monotonic() - started, 1),
            **{k: TALLY[k] for k in sorted(TALLY)},
        }
        Path(REPORT_PATH).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT_PATH).write_text(json.dumps(report, indent=2) + "\n")

    TALLY.clear()
    TALLY.update({key: 0 for key in ALWAYS_REPORTED})
    passed = False
    try:
        example()
        while LONG and TALLY["examples"] < EXAMPLES and time.monotonic() - started < BUDGET:
            write_report(True)  # progress so far, in case the run is stopped
            example()  # another round, another seed
        passed = True
    finally:
        for node in nodes:
            node.down()
        write_report(passed)


# ---------------------------------------------------------------------------
# The text actions, pinned


def test_text_xml_cannot_hold_reads_back_and_travels_identical(
    emulator: Callable[..., Any],
) -> None:
    """What the property's control-character action sends (a lone surrogate included,
    as a JSON escape) is stored, read back through the REST API and synchronized
    unchanged; so are 100,000-character notes."""
    parent, ohio = emulator("Parent"), emulator("Ohio")
    table = f"Ohio true {ohio.url} ''"
    clients = [WMServerClient(s.url, user=USER) for s in (parent, ohio)]
    text, notes = f"c{CONTROL_TEXT}", ("notes\x0b" * LONG_NOTES_CHARS)[:LONG_NOTES_CHARS]
    job = clients[1].post("jobs/create", jobTypeId=1, name="J")["jobIds"][0]
    clients[1].post(f"jobs/{job}/update", properties=json.dumps({"description": text}))
    clients[1].post(f"jobs/{job}/notes/update", notes=notes)
    assert synchronize(parent.url, "Parent", table, user=USER).status == 0
    # Ohio's own job moved into its block as Ohio joined (docs/design.md §4).
    job = next(
        i for i in clients[1].get("jobs")["jobIds"] if clients[1].get(f"jobs/{i}")["name"] == "J"
    )
    for client in clients:
        assert client.get(f"jobs/{job}")["description"] == text
        assert client.get(f"jobs/{job}/notes")["notes"] == notes
    assert parent.store.fingerprint() == ohio.store.fingerprint()


# ---------------------------------------------------------------------------
# Minimal reproductions of what the property found in the product


@pytest.mark.parametrize("edits_after", [0, 2])
def test_an_unconfirmed_edit_that_reached_the_parent_survives_a_restore(
    emulator: Callable[..., Any], tmp_path: Path, edits_after: int
) -> None:
    parent, ohio = emulator("Parent"), emulator("Ohio")
    table = f"Ohio true {ohio.url} ''"
    p_client, o_client = WMServerClient(parent.url, user=USER), WMServerClient(ohio.url, user=USER)
    # Made on the parent: a child's own job is renumbered when it joins.
    job = p_client.post("jobs/create", jobTypeId=1, name="J")["jobIds"][0]
    assert synchronize(parent.url, "Parent", table, user=USER).status == 0
    copy = sqlite_copy_to(ohio.db_path, tmp_path / "ohio-backup.sqlite")

    def describe(client: WMServerClient, text: str) -> None:
        client.post(f"jobs/{job}/update", properties=json.dumps({"description": text}))

    describe(o_client, "reached the parent")
    # The run dies after the parent's import, before either side's mark is written.
    parent.app.faults.append(Fault(STAGES["nodes"], "drop"))
    assert synchronize(parent.url, "Parent", table, user=USER).status == 1
    parent.app.faults.clear()
    assert p_client.get(f"jobs/{job}")["description"] == "reached the parent"

    ohio.stop()  # restored offline to the copy taken before the edit
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ohio.db_path}{suffix}").unlink(missing_ok=True)
    Path(ohio.db_path).write_bytes(copy.read_bytes())
    ohio = emulator("Ohio", db_path=ohio.db_path, port=ohio.port)
    o_client = WMServerClient(ohio.url, user=USER)
    for number in range(edits_after):
        describe(o_client, f"after the restore, {number + 1}")
    for _ in range(2):  # two clean runs: nothing left to a later one
        assert synchronize(parent.url, "Parent", table, user=USER).status == 0

    final = p_client.get(f"jobs/{job}")["description"]
    logged = [
        c["loser"]["content"].get("description")
        for client in (p_client, o_client)
        for c in client.get("replication/conflicts")["conflicts"]
    ]
    assert final == "reached the parent" or "reached the parent" in logged, (final, logged)
    assert parent.store.fingerprint() == ohio.store.fingerprint(), "diverged for good"


def test_a_job_made_on_a_rebuilt_parent_before_its_next_run_keeps_one_id(
    emulator: Callable[..., Any],
) -> None:
    parent, ohio = emulator("Parent"), emulator("Ohio")
    table = f"Ohio true {ohio.url} ''"
    WMServerClient(parent.url, user=USER).post("jobs/create", jobTypeId=1, name="before")
    assert synchronize(parent.url, "Parent", table, user=USER).status == 0
    parent.stop()  # rebuilt: a new, empty database under the same name and port
    for suffix in ("", "-wal", "-shm"):
        Path(f"{parent.db_path}{suffix}").unlink(missing_ok=True)
    parent = emulator("Parent", db_path=parent.db_path, port=parent.port)
    WMServerClient(parent.url, user=USER).post("jobs/create", jobTypeId=1, name="after")
    assert synchronize(parent.url, "Parent", table, user=USER).status == 0

    def ids(server: Any) -> Dict[str, Any]:
        return {e.guid: e.local_id for e in server.store.elements() if e.kind == "Job"}

    assert ids(parent) == ids(ohio)


def test_a_parent_found_gone_back_again_by_a_child_that_was_away_ends_the_run_in_step(
    emulator: Callable[..., Any],
) -> None:
    # Found by the long run (2 December): a child that missed the run which found the
    # rebuilt parent finds it again; the parent re-stamps once more, and a child that
    # already held the first re-stamp's versions met the new ones only in the push.
    names = ("Parent", "Ohio", "AZ", "Utah")
    servers = {name: emulator(name) for name in names}
    parent = servers["Parent"]

    def table(*connected: str) -> str:
        return ";".join(
            f"{n} {'true' if n in connected else 'false'} {servers[n].url} ''" for n in names[1:]
        )

    def create(name: str) -> None:
        WMServerClient(servers[name].url, user=USER).post("jobs/create", jobTypeId=1, name=name)

    create("Parent")
    assert synchronize(parent.url, "Parent", table(*names[1:]), user=USER).status == 0
    parent.stop()  # rebuilt: a new, empty database under the same name and port
    for suffix in ("", "-wal", "-shm"):
        Path(f"{parent.db_path}{suffix}").unlink(missing_ok=True)
    parent = servers["Parent"] = emulator("Parent", db_path=parent.db_path, port=parent.port)
    for _ in range(3):
        create("Parent")
    # Ohio is away; Utah's node rows cannot be written (its row on the parent can).
    servers["Utah"].app.faults.append(Fault(STAGES["nodes"], "wrongtype"))
    found = synchronize(parent.url, "Parent", table("AZ", "Utah"), user=USER)
    servers["Utah"].app.faults.clear()
    assert [c.state for c in found.children] == ["skipped", "synchronized", "failed"]
    again = synchronize(parent.url, "Parent", table(*names[1:]), user=USER)
    assert again.status == 0, again.summary_lines()
    prints = {name: server.store.fingerprint() for name, server in servers.items()}
    for name in names[1:]:
        assert prints[name] == prints["Parent"], f"{name} is not in step with the parent"
    quiet = synchronize(parent.url, "Parent", table(*names[1:]), user=USER)
    assert quiet.status == 0 and sum(c.sent + c.received for c in quiet.children) == 0
