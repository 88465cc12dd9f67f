"""Synchronization by file converges, as a property (hypothesis): nothing lost, nothing
duplicated (docs/design.md §11).

Every example starts a fresh cluster behind real loopback servers: a parent (HQ), a
connected child (Ohio) synchronized by runs, and a disconnected child (Office) that joins
by the parent's first file and is then kept in step by files only. A random program
edits jobs on any node, runs connected synchronizations, and exports files both ways;
files are delivered late, out of order, twice, or never (lost). Then files travel in
order for a few rounds, and:

- all three repositories hold the same elements (GUIDs, content, version vectors);
- every job a user created and nobody deleted is there, once: live job names are unique;
- a further round moves nothing (both files empty, no run sends anything).

``WMSYNC_FILE_EXAMPLES=N`` sets the example count (default 8, under a minute);
``WMSYNC_LONG=1`` means 500 with random seeds.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Set

from cluster import USER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.server import start_in_thread
from wmsync.filesync import export_job_data, import_job_data

LONG = os.environ.get("WMSYNC_LONG", "") not in ("", "0")
EXAMPLES = int(os.environ.get("WMSYNC_FILE_EXAMPLES") or (500 if LONG else 8))
NAMES = ("HQ", "Ohio", "Office")
DOWN, UP = "HQ->Office", "Office->HQ"

edit = st.tuples(
    st.just("edit"),
    st.integers(0, 2),
    st.sampled_from(["create", "create", "edit", "delete"]),
    st.integers(0, 50),
)
step = st.one_of(
    edit,
    st.tuples(st.just("sync")),
    st.tuples(st.just("export"), st.sampled_from([DOWN, UP])),
    st.tuples(st.just("deliver"), st.sampled_from([DOWN, UP]), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("lose"), st.sampled_from([DOWN, UP]), st.integers(0, 9)),
)


class Example:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers = {name: start_in_thread(name, root / f"{name}.sqlite") for name in NAMES}
        self.clients = {name: WMServerClient(s.url, user=USER) for name, s in self.servers.items()}
        self.outbox: Dict[str, List[Path]] = {DOWN: [], UP: []}
        self.files = itertools.count()
        self.tokens = itertools.count()
        self.created: Set[str] = set()
        self.deleted: Set[str] = set()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        for server in self.servers.values():
            server.stop()

    def url(self, name: str) -> str:
        return str(self.servers[name].url)

    def sync(self) -> Any:
        result = synchronize(self.url("HQ"), "HQ", f"Ohio true {self.url('Ohio')} ''", user=USER)
        assert result.status == 0, result.summary_lines()
        return result

    def export(self, direction: str, **options: Any) -> Any:
        source, peer = direction.split("->")
        path = self.root / f"f{next(self.files)}.zip"
        outcome = export_job_data(self.url(source), peer, str(path), user=USER, **options)
        self.outbox[direction].append(path)
        return outcome

    def deliver(self, direction: str, path: Path) -> Any:
        return import_job_data(self.url(direction.split("->")[1]), str(path), user=USER)

    def edit(self, node: str, op: str, pick: int) -> None:
        client = self.clients[node]
        store = self.servers[node].store
        jobs = [e for e in store.elements(include_deleted=False) if e.kind == "Job"]
        token = f"t{next(self.tokens)}"
        if op == "create" or not jobs:
            client.post("jobs/create", jobTypeId=1, name=token, description=token)
            self.created.add(token)
            return
        job = jobs[pick % len(jobs)]
        if op == "edit":
            client.post(f"jobs/{job.local_id}/update", properties=f'{{"description": "{token}"}}')
        else:
            client.post(f"jobs/{job.local_id}/delete")
            self.deleted.add(job.fields["name"])

    def fingerprints(self) -> List[Any]:
        return [self.servers[name].store.fingerprint() for name in NAMES]

    def round(self) -> int:
        """Files in order both ways around a connected run; what moved."""
        moved = 0
        for direction in (UP, DOWN):
            outcome = self.export(direction)
            moved += outcome.manifest.count
            self.deliver(direction, self.outbox[direction].pop())
        result = self.sync()
        moved += sum(c.sent + c.received for c in result.children)
        return moved


def check(ex: Example) -> None:
    prints = ex.fingerprints()
    assert prints[0] == prints[1] == prints[2], "the repositories differ"
    for name in NAMES:
        live = [
            e.fields["name"]
            for e in ex.servers[name].store.elements(include_deleted=False)
            if e.kind == "Job"
        ]
        assert len(live) == len(set(live)), f"{name} holds a job twice"
        missing = (ex.created - ex.deleted) - set(live)
        assert not missing, f"{name} lost {sorted(missing)}"


def test_a_disconnected_child_kept_in_step_by_files_converges() -> None:
    base = Path(tempfile.mkdtemp(prefix="wmsync-filesync-"))
    counter = itertools.count()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(program=st.lists(step, min_size=3, max_size=25))
    def example(program: List[Any]) -> None:
        root = base / f"ex{next(counter)}"
        root.mkdir()
        ex = Example(root)
        try:
            ex.sync()
            joined = ex.export(DOWN, register_child=True)
            assert joined.registered
            ex.deliver(DOWN, ex.outbox[DOWN].pop())
            for item in program:
                if item[0] == "edit":
                    ex.edit(NAMES[item[1]], item[2], item[3])
                elif item[0] == "sync":
                    ex.sync()
                elif item[0] == "export":
                    ex.export(item[1])
                elif ex.outbox[item[1]]:
                    box = ex.outbox[item[1]]
                    path = box[item[2] % len(box)]
                    if item[0] == "deliver":
                        ex.deliver(item[1], path)  # late, out of order, or again
                    if item[0] == "lose" or not item[3]:
                        box.remove(path)
            for _ in range(4):
                if ex.round() == 0:
                    break
            check(ex)
            assert ex.round() == 0, "a further round moved something"
        finally:
            ex.close()
            shutil.rmtree(root, ignore_errors=True)

    try:
        example()
    finally:
        shutil.rmtree(base, ignore_errors=True)
