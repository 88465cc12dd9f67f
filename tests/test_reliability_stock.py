"""Convergence as a property (hypothesis) for clusters with stock repositories: all-stock
clusters and mixed ones, where some repositories are true stock servers
(``EmulatorConfig(stock=True)``: only Esri's documented operations) synchronized through
stock replicas and a state store (one per example, kept across its runs).

The program is the one of ``tests/test_reliability_convergence.py`` (users' edits on any
node through the REST API, runs with failures injected), with the edits and faults a
stock server can take: configuration cannot be edited over a stock server's REST API
(job types, users and groups come from its site configuration), so configuration edits
are made on extension nodes only; faults on a stock node hit the documented routes the
stock replica uses (the scan's reads, the writer's creates and updates).

The invariants are those of the extension property, compared on what the stock path
carries (docs/design.md §10; ``wmsync/stock/__init__.py``):

- converged: after a final fault-free run, every node shows the same jobs by id with
  the same *carried* fields (name, description, status, closed or not, notes), the same
  holds (type, comment without the provenance tag, released or not) and the same user
  comments (activity records of type 7). Not compared across stock nodes, because a
  stock server does not receive them: created/started/end dates, stage and creator
  (each server sets its own), the activity Workflow Manager logs as side effects of
  writes, and configuration. Extension nodes, which receive everything, must agree on
  everything among themselves (``Store.fingerprint()``);
- nothing lost: every job a user created is on every node unless a user deleted it
  (somewhere); every hold and comment made on a job that was never deleted is on every
  node; every carried value is one a user wrote;
- no duplicates: job names (unique tokens) are unique on every node, a job has the same
  id everywhere, and every comment and hold appears exactly once;
- a further run moves nothing and writes nothing anywhere (extension generations and
  stock servers' job views unchanged).

What is not checked here, unlike the extension property: that every *version* is
covered by the final version vector (a stock server's versions are made by the scan,
not by the user's edit) and that each losing version is in a conflict log.

``WMSYNC_EXAMPLES=N`` sets the example count (default 2: about a minute and a half on
a shared, busy two-core machine); ``WMSYNC_SEED=N`` picks other programs (the default
ones are fixed); ``WMSYNC_LONG=1`` means 1,000 examples with random seeds.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import test_reliability_convergence as base
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from wmsync.client import WMServerClient
from wmsync.emulator.app import EmulatorConfig, Fault, create_app
from wmsync.repository import catalog
from wmsync.stock import StockReplicas, stock_client_factory
from wmsync.stock.views import strip_tag

LONG = os.environ.get("WMSYNC_LONG", "") not in ("", "0")
EXAMPLES = int(os.environ.get("WMSYNC_EXAMPLES") or (1_000 if LONG else 2))
SEED = os.environ.get("WMSYNC_SEED")  # another fixed program in short mode
USER = base.USER
CONFIG_EDITS = {"type_create", "type_edit", "user_create", "user_edit", "group_edit"}
EDITS = [
    "job_create",
    "job_create",
    "job_edit",
    "job_edit",
    "job_notes",
    "job_delete",
    "job_close",
    "hold_create",
    "hold_release",
    "comment",
    "type_edit",
    "user_create",
]
#: What a fault on a stock node hits (paths below the service root): the scan's reads
#: and the writer's creates and updates. The extension stages of the base test never
#: reach a stock server.
STOCK_STAGES = {
    "info": r"^/?$",
    "export": r"jobs/\d+/activity$",
    "download": r"jobs/\d+/holds$",
    "import": r"jobs/create",
    "nodes": r"jobs/\d+/update",
}
TALLY: Counter = Counter()


class MixedNode(base.Node):
    """A node of the base test that may be a true stock server."""

    stock = False

    def fresh(self, db_path: Path, clock_offset_ms: int) -> None:
        self.app = create_app(
            EmulatorConfig(
                repository=self.name,
                db_path=str(db_path),
                clock_offset_ms=clock_offset_ms,
                stock=self.stock,
            )
        )
        self.gate.inner = self.app
        if self.running is None:
            self.up()


class MixedExample(base.Example):
    """One example of a cluster with stock nodes; records what users made and deleted."""

    def __init__(self, nodes: List[MixedNode], root: Path, offsets: List[int]) -> None:
        super().__init__(nodes, root, offsets)  # type: ignore[arg-type]
        self.state = root / "state" / "state.sqlite"
        self.created: Set[str] = set()  # job names
        self.deleted: Set[str] = set()  # names of jobs a user deleted (anywhere)
        self.attached: List[Tuple[str, str, str]] = []  # (kind, job name, token)
        self.values: Set[str] = {""}  # every carried value a user wrote

    @property
    def stock_urls(self) -> List[str]:
        return [n.url for n in self.nodes if getattr(n, "stock", False)]

    def sync(self, factory: Optional[Callable[[str], Any]] = None) -> Any:
        options: Dict[str, Any] = {}
        if factory is base.faulty_client:
            options = dict(
                timeout=base.T_CALL, transfer_timeout=base.T_TRANSFER, retries=2, backoff=0.01
            )
        builder = StockReplicas(self.state)
        stock = stock_client_factory(builder, user=USER, stock_urls=self.stock_urls, **options)
        try:
            return super().sync(stock)
        finally:
            builder.close()

    def _edit(self, node: base.Node, op: str, pick: int) -> bool:
        if op in CONFIG_EDITS and getattr(node, "stock", False):
            return False  # not over a stock server's REST API
        client = self.clients[node.name]
        jobs = self._live(node, "Job")
        job = jobs[pick % len(jobs)] if jobs else None
        if op == "job_create":
            name, description = self.token("job"), self.token("d")
            client.post("jobs/create", jobTypeId=1, name=name, description=description)
            self.created.add(name)
            self.values.add(description)
            return True
        if op in ("job_delete", "job_close", "comment", "hold_create") and job is None:
            return False
        if op == "job_delete":
            self.deleted.add(str(job.fields.get("name", "")))
        elif op == "job_close":
            if str(job.fields.get("stage")) == str(catalog.STAGE_CLOSED):
                return False
            client.post("jobs/close", jobs=str(job.local_id))
            return True
        elif op == "comment":
            text = self.token("c")
            client.post(f"jobs/{job.local_id}/activity/logAction", type=7, comments=text)
            self.attached.append(("comment", str(job.fields.get("name", "")), text))
            return True
        elif op == "hold_create":
            text = self.token("h")
            client.post(f"jobs/{job.local_id}/holds/create", type=1, comments=text)
            self.attached.append(("hold", str(job.fields.get("name", "")), text))
            return True
        done: bool = super()._edit(node, op, pick)
        return done

    def arm(self, spec: Tuple[str, int, str, Optional[int]]) -> Callable[[], int]:
        kind, target, stage, times = spec
        node = self.nodes[target % len(self.nodes)]
        if getattr(node, "stock", False) and not kind.startswith("kill_") and kind != "down":
            if kind == "timeout":
                fault = Fault(
                    STOCK_STAGES[stage], "latency", seconds=base.T_CALL + 0.35, times=times
                )
            elif kind == "wrongtype":
                fault = Fault(STOCK_STAGES[stage], kind, times=times, content_type="text/html")
            else:
                fault = Fault(STOCK_STAGES[stage], kind, times=times)
            node.faults().append(fault)
            return lambda: fault.hits
        return super().arm(spec)


# ---------------------------------------------------------------------------
# What users see, by job id


def user_view(client: WMServerClient) -> Dict[int, Dict[str, Any]]:
    """Every job as a user sees it over Esri's documented operations (carried fields)."""
    out: Dict[int, Dict[str, Any]] = {}
    for job_id in client.get("jobs")["jobIds"]:
        one = client.get(f"jobs/{job_id}")
        holds = sorted(
            (h["type"], strip_tag(h.get("holdComments") or ""), h.get("releaseDate") is not None)
            for h in client.get(f"jobs/{job_id}/holds")["holds"]
        )
        comments = sorted(
            strip_tag(a.get("message") or "")
            for a in client.get(f"jobs/{job_id}/activity")["activity"]
            if a.get("type") == 7
        )
        out[int(job_id)] = {
            "name": one.get("name"),
            "description": one.get("description") or "",
            "status": one.get("status"),
            "closed": one.get("endDate") is not None,
            "notes": client.get(f"jobs/{job_id}/notes").get("notes") or "",
            "holds": holds,
            "comments": comments,
        }
    return out


def check_invariants(ex: MixedExample) -> Dict[str, int]:
    views = {n.name: user_view(ex.clients[n.name]) for n in ex.nodes}
    reference = views["Parent"]
    for name, found in views.items():
        if found != reference:
            differ = sorted(
                i for i in set(found) | set(reference) if found.get(i) != reference.get(i)
            )
            raise AssertionError(
                f"{name} differs from the parent on jobs {differ[:5]}: "
                f"{[(found.get(i), reference.get(i)) for i in differ[:2]]}"
            )
    extension = [n for n in ex.nodes if not getattr(n, "stock", False)]
    prints = [n.store.fingerprint() for n in extension]
    assert all(p == prints[0] for p in prints[1:]), "extension nodes differ"

    problems: List[str] = []
    names = Counter(job["name"] for job in reference.values())
    problems += [f"job {n!r} x{c}" for n, c in names.items() if c > 1]
    by_name = {job["name"]: job for job in reference.values()}
    for name in ex.created - ex.deleted:
        if name not in by_name:
            problems.append(f"job {name!r} was lost")
    for kind, job_name, text in ex.attached:
        if job_name in ex.deleted or job_name not in by_name:
            continue
        job = by_name[job_name]
        found = (
            job["comments"].count(text)
            if kind == "comment"
            else sum(1 for h in job["holds"] if h[1] == text)
        )
        if found != 1:
            problems.append(f"{kind} {text!r} on {job_name!r} found {found} times")
    initial = {
        str(e.fields.get("name")) for e in ex.parent.store.elements() if e.kind == "Job"
    } - ex.created
    for job in reference.values():
        if job["name"] not in ex.created and job["name"] not in initial:
            problems.append(f"job {job['name']!r} appeared from nowhere")
    assert not problems, problems[:5]
    return {
        "jobs": len(reference),
        "stock_nodes": sum(1 for n in ex.nodes if getattr(n, "stock", False)),
    }


# ---------------------------------------------------------------------------
# The property


edit = st.tuples(st.integers(0, 3), st.sampled_from(EDITS), st.integers(0, 1000))
step = st.one_of(
    st.tuples(st.just("edit"), st.lists(edit, min_size=1, max_size=4)),
    st.tuples(st.just("sync"), st.lists(base.fault_spec, max_size=1)),
)


def test_clusters_with_stock_servers_converge_with_nothing_lost(tmp_path_factory):
    root_dir = tmp_path_factory.mktemp("stock-convergence")
    nodes = [MixedNode(name) for name in base.NAMES[:4]]
    counter = itertools.count()
    previous: List[Path] = []
    started = time.monotonic()

    @seed(int(SEED or 0))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not (LONG or SEED),
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(
        children=st.integers(1, 3),
        all_stock=st.booleans(),
        stock=st.lists(st.booleans(), min_size=4, max_size=4),
        offsets=st.lists(st.sampled_from([0, 0, base.HOUR, -base.HOUR]), min_size=4, max_size=4),
        program=st.lists(step, min_size=2, max_size=6),
    )
    def example(children, all_stock, stock, offsets, program):
        for old in previous:
            shutil.rmtree(old, ignore_errors=True)
        previous.clear()
        root = root_dir / f"ex{next(counter)}"
        previous.append(root)
        used = nodes[: children + 1]
        stock = [True] * 4 if all_stock else stock[: children + 1]
        if not all_stock and len(set(stock)) == 1:  # mixed: at least one of each kind
            stock = [not stock[0], *stock[1:]]
        for node, is_stock in zip(nodes, stock):
            node.stock = is_stock
        ex = MixedExample(used, root, offsets)
        try:
            first = ex.sync()
            assert first.status == 0, first.summary_lines()
            for index, node in enumerate(ex.nodes):  # something on every node to work on
                for op in ("job_create", "hold_create", "comment"):
                    ex.edit(node, op, index)
            for item in program:
                if item[0] == "edit":
                    for target, op, pick in item[1]:
                        ex.edit(ex.nodes[target % len(ex.nodes)], op, pick)
                    continue
                counters = [ex.arm(spec) for spec in item[1]]
                try:
                    result = ex.sync(base.faulty_client)
                finally:
                    ex.disarm()
                TALLY["sync_runs"] += 1
                TALLY["faults_injected"] += sum(count() for count in counters)
                TALLY["runs_with_failures"] += int(result.status != 0)
                assert -1 <= result.status <= children
            # Quiet runs: as many as the cluster needs (a stock node's first write of a
            # job, then the others' echo) — and then one that must move nothing.
            for _ in range(3):
                final = ex.sync()
                assert final.status == 0, final.summary_lines()
            tally = check_invariants(ex)
            generations = [n.store.generation() for n in ex.nodes]
            views = {n.name: user_view(ex.clients[n.name]) for n in ex.nodes}
            again = ex.sync()
            assert again.status == 0, again.summary_lines()
            assert sum(c.sent + c.received for c in again.children) == 0
            assert [n.store.generation() for n in ex.nodes] == generations
            assert {n.name: user_view(ex.clients[n.name]) for n in ex.nodes} == views
            TALLY["examples"] += 1
            TALLY["all_stock" if tally["stock_nodes"] == len(used) else "mixed"] += 1
            TALLY["jobs_at_end"] += tally["jobs"]
        finally:
            ex.close()
            for node in ex.nodes:
                node.faults().clear()
                if node.running is None:
                    node.up()
            ex.wait_quiet()

    TALLY.clear()
    base.TALLY.clear()
    try:
        example()
    finally:
        for node in nodes:
            node.down()
        TALLY["edits"] = base.TALLY["edits"]
        summary = {
            "seconds": round(time.monotonic() - started, 1),
            **{k: TALLY[k] for k in sorted(TALLY)},
        }
        print("stock convergence:", json.dumps(summary))
