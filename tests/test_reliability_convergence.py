"""Convergence under faults, as a property (hypothesis): nothing lost, nothing duplicated.

Every example builds a fresh cluster (a parent and 1-4 children, each with its own clock
offset of 0 or +/- 1 hour) behind real loopback servers, registers it with one clean
run, then plays a random program: users create, edit and delete jobs, holds, job types,
users and the default group on any node through the REST API, and synchronization runs
happen with random failures injected at any stage of any node (a server down, a
timeout, a 500 envelope, HTTP 500, a dropped connection, a truncated or mislabelled or
HTML answer, and "the process was killed" between an import and its watermark commit or
between the pull and the push). After one final fault-free run the invariants must hold:

- every node holds the same elements: same GUIDs, content and version vectors
  (``Store.fingerprint()``), hence the same conflict winners everywhere;
- no change is lost: every local version ever written (recorded by diffing the node's
  store around each user edit) is covered by the final version vector, and every
  *maximal* one (no later version of the same element was made on top of it) is either
  the final content or a loser in some node's conflict log; the final content is one
  that a user wrote; no element appears from nowhere or disappears;
- no job exists twice: live job names (unique tokens) are unique on every node, and a
  job has the same id everywhere;
- holds and activity records follow their job: none is live on a deleted job, and none
  deleted with its job stays deleted when the job is live (a repository's automatic
  edits that do this are accepted in the place of the user's version they flip);
- a further run moves nothing and changes no generation.

Servers are started once per test and reused: each example swaps a fresh application
(new SQLite files) in behind them. ``WMSYNC_EXAMPLES=N`` sets the example count
(default 25); ``WMSYNC_LONG=1`` means 10,000 with random seeds. Tallies go to the JSON
file named by ``WMSYNC_RELIABILITY_JSON`` (in long mode by default
``benchmarks/results/reliability.json``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.app import EmulatorConfig, Fault, create_app
from wmsync.emulator.server import QuietRequestHandler, RunningEmulator, root_url
from wmsync.model import EQUAL, OLDER, compare_vv
from wmsync.report import child_line

LONG = os.environ.get("WMSYNC_LONG", "") not in ("", "0")
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
]


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

    def fresh(self, db_path: Path, clock_offset_ms: int) -> None:
        self.app = create_app(
            EmulatorConfig(
                repository=self.name, db_path=str(db_path), clock_offset_ms=clock_offset_ms
            )
        )
        self.gate.inner = self.app
        if self.running is None:
            self.up()

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


TALLY: Counter = Counter()


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

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def token(self, what: str) -> str:
        return f"{what}-{next(self.tokens)}"

    @property
    def parent(self) -> Node:
        return self.nodes[0]

    # -- runs ------------------------------------------------------------------

    def sync(self, factory: Optional[Callable[[str], Any]] = None) -> Any:
        result = synchronize(
            self.parent.url, "Parent", self.table, user=USER, client_factory=factory
        )
        if result.status >= 0 and result.last_sync_text:
            self.table = result.last_sync_text  # chained, as ModelBuilder does
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
                )
            )
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
        else:  # pragma: no cover
            raise AssertionError(op)
        return True

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
    assert set(final) == set(ex.initial) | set(by_guid), "an element appeared or vanished"
    for guid, element in final.items():
        writes = by_guid.get(guid, [])
        contents = {w.content for w in writes}
        if guid in ex.initial:
            contents.add(ex.initial[guid][1])
        # A hold or activity record follows its job (docs/design.md §4): a repository's
        # own automatic edit (made during an import, so not recorded here) may flip the
        # deleted flag of a version a user wrote, keeping its content.
        final_fields = tuple(sorted(element.fields.items()))
        followed = {(not w.deleted, w.fields) for w in writes}
        if (
            element.content_hash() not in contents
            and (element.deleted, final_fields) not in followed
        ):
            lost.append(f"{guid}: final content was never written by a user")
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

    duplicates: List[str] = []
    ids_everywhere = None
    for node in ex.nodes:
        jobs = [e for e in node.store.elements(include_deleted=False) if e.kind == "Job"]
        names = Counter(e.fields.get("name") for e in jobs)
        duplicates += [f"{node.name}: job {n!r} x{c}" for n, c in names.items() if c > 1]
        ids = {e.guid: e.local_id for e in jobs}
        if len(set(ids.values())) != len(ids):
            duplicates.append(f"{node.name}: a job id is used twice")
        if ids_everywhere is None:
            ids_everywhere = ids
        elif ids != ids_everywhere:
            duplicates.append(f"{node.name}: job ids differ from the parent's")
    orphans = [f"{n.name}: {o}" for n in ex.nodes for o in not_following_their_job(n.store)]
    tally = {"lost": len(lost), "duplicates": len(duplicates), "conflicts_logged": len(losers)}
    assert not orphans, orphans[:5]
    assert not lost, lost[:5]
    assert not duplicates, duplicates[:5]
    return tally


# ---------------------------------------------------------------------------
# The property


fault_spec = st.tuples(
    st.sampled_from(FAULT_KINDS),
    st.integers(0, 4),
    st.sampled_from(sorted(STAGES)),
    st.sampled_from([1, None]),
)
edit = st.tuples(st.integers(0, 4), st.sampled_from(EDITS), st.integers(0, 1000))
step = st.one_of(
    # users at work between runs, often on the same element on several nodes (the same
    # pick selects the same element on nodes that hold the same ones): conflicts
    st.tuples(st.just("edit"), st.lists(edit, min_size=1, max_size=4)),
    st.tuples(st.just("sync"), st.lists(fault_spec, max_size=2)),
)


def test_random_clusters_converge_under_faults_with_nothing_lost(tmp_path_factory):
    base = tmp_path_factory.mktemp("convergence")
    nodes = [Node(name) for name in NAMES]
    counter = itertools.count()
    started = time.monotonic()
    previous: List[Path] = []

    @settings(
        max_examples=CHUNK,
        deadline=None,
        derandomize=not LONG,
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
                counters = [ex.arm(spec) for spec in item[1]]
                try:
                    result = ex.sync(faulty_client)
                finally:
                    ex.disarm()
                TALLY["sync_runs"] += 1
                TALLY["faults_injected"] += sum(count() for count in counters)
                TALLY["runs_with_failures"] += int(result.status != 0)
                assert -1 <= result.status <= children
                if result.status == -1:
                    assert result.error and "Parent" in result.error
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
        finally:
            ex.close()
            for node in ex.nodes:
                node.faults().clear()
                if node.running is None:
                    node.up()
            ex.wait_quiet()

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
