"""The store's own-counter mark (``replication/info``'s ``ownCounter``): after a node
update, the highest own counter is read from the rows written since, not from every
element, and it always equals a pass over every element, through edits, imports that
bring the repository's own counters back, new incarnations, backups and restores."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Dict, List

from hypothesis import given, settings
from hypothesis import strategies as st

from wmsync.model import Element, guid_for_name, new_guid
from wmsync.repository.store import Store, _own_counter_after, highest_own_counter

PARTNER = "Ohio"
DEFAULT_TYPE = guid_for_name("JobType", "Default")


def counters(store: Store) -> tuple[int, int]:
    """(what replication/info reports, a pass over every element)."""
    with store.reading() as session:
        every = _own_counter_after(session, session.incarnation(), None)
        return highest_own_counter(session), every


def steps_to_count(store: Store) -> int:
    """SQLite virtual machine steps (in hundreds) that one reading of the counter takes."""
    with store.reading() as session:
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0

        session.conn.set_progress_handler(tick, 100)
        highest_own_counter(session)
        session.conn.set_progress_handler(None, 0)
        return steps[0]


def edit_job(store: Store, guid: str | None, text: str) -> str:
    with store.atomic() as session:
        return session.edit("Job", guid, {"name": text, "jobType": DEFAULT_TYPE}).guid


def test_after_a_node_update_the_counter_is_read_from_newer_rows_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "Parent.sqlite", "Parent")
    store.bulk_insert_jobs(5000)
    every_row = steps_to_count(store)  # no mark yet: a pass over every element
    store.update_node(PARTNER, is_connected=True)
    guid = edit_job(store, None, "after the mark")
    for n in range(3):
        edit_job(store, guid, f"edit {n}")
    newer_rows = steps_to_count(store)
    assert every_row > 100 and newer_rows * 20 < every_row, (every_row, newer_rows)
    assert counters(store) == (4, 4)


def test_a_mark_of_an_older_incarnation_is_not_used(tmp_path: Path) -> None:
    store = Store(tmp_path / "Parent.sqlite", "Parent")
    guid = edit_job(store, None, "one")
    for n in range(5):
        edit_job(store, guid, f"edit {n}")
    store.update_node(PARTNER, is_connected=True)
    assert counters(store) == (6, 6)
    store.new_incarnation(since_gen=0)  # re-stamped: counter 1 of the new incarnation
    assert counters(store) == (1, 1)


def backup(store: Store, path: Path) -> None:
    source, target = sqlite3.connect(str(store.path)), sqlite3.connect(str(path))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def restore(store: Store, path: Path) -> None:
    """Put a backup back in place, with SQLite's backup API, as a live server sees it."""
    source, target = sqlite3.connect(str(path)), sqlite3.connect(str(store.path))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


ACTIONS = st.sampled_from(
    ["new", "edit", "import", "echo", "conflict", "node", "incarnation", "backup", "restore"]
)


@settings(max_examples=40, deadline=None)
@given(actions=st.lists(ACTIONS, min_size=1, max_size=25), pick=st.randoms(use_true_random=False))
def test_the_counter_read_from_the_mark_is_always_the_full_pass(actions, pick) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "Parent.sqlite", "Parent")
        guids: List[str] = [edit_job(store, None, "first")]
        partner: Dict[str, int] = {}
        saved = Path(folder) / "backup.sqlite"
        for step, action in enumerate(actions):
            if action == "new":
                guids.append(edit_job(store, None, f"new {step}"))
            elif action == "edit":
                edit_job(store, pick.choice(guids), f"edit {step}")
            elif action in ("import", "echo", "conflict"):
                current = store.get(pick.choice(guids))
                assert current is not None
                vv = dict(current.element.vv)
                partner[current.guid] = partner.get(current.guid, 0) + 1
                if action == "echo":  # its own counters from before a restore, coming back
                    own = store.identity()["incarnation"]
                    vv[own] = vv.get(own, 0) + pick.randint(1, 5)
                if action == "conflict":
                    vv = {}  # concurrent: the merged vector is stored
                vv[PARTNER] = max(vv.get(PARTNER, 0), partner[current.guid])
                incoming = Element(
                    "Job",
                    current.guid,
                    vv,
                    current.element.modified + 1,
                    PARTNER,
                    {"name": f"{action} {step}", "jobType": DEFAULT_TYPE},
                    local_id=current.element.local_id,
                )
                store.apply_elements([incoming], sender=PARTNER)
            elif action == "node":
                store.update_node(PARTNER, is_connected=True, last_sync_gen=store.generation())
            elif action == "incarnation":
                store.new_incarnation(since_gen=0)
            elif action == "backup":
                backup(store, saved)
            elif action == "restore" and saved.exists():
                restore(store, saved)
                guids = [e.guid for e in store.elements() if e.element.kind == "Job"]
            reported, every = counters(store)
            assert reported == every, (step, action)


def test_a_new_job_from_a_partner_carries_no_counter_of_its_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "Parent.sqlite", "Parent")
    edit_job(store, None, "one")
    store.update_node(PARTNER, is_connected=True)
    incoming = Element(
        "Job",
        new_guid(),
        {PARTNER: 1, "Parent": 9},  # the parent's own counter 9, sent back to it
        1,
        PARTNER,
        {"name": "from Ohio", "jobType": DEFAULT_TYPE},
        local_id=2_000_001,
    )
    store.apply_elements([incoming], sender=PARTNER)
    assert counters(store) == (9, 9)
