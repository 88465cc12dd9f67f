"""The repository's rule for a joining child's own jobs (wmsync/repository/renumbering.py):
which jobs move, where to, and that a refusal changes nothing. SQLite only."""

from __future__ import annotations

from typing import Dict, Optional

import pytest
from cluster import Clock

from wmsync.model import Element, new_guid
from wmsync.repository.renumbering import own_only, renumber_own_jobs
from wmsync.repository.store import Store

START, SIZE = 1_000_001, 1_000_000


def make(tmp_path) -> Store:
    return Store(tmp_path / "ohio.sqlite", "Ohio", clock=Clock())


def new_job(store: Store, local_id: int) -> str:
    with store.atomic() as s:
        return s.edit("Job", None, {"name": f"job {local_id}"}, local_id=local_id).guid


def received(store: Store, local_id: int, vv: Dict[str, int], via: str = "Parent") -> str:
    guid = new_guid()
    element = Element("Job", guid, vv, 1000, "Parent", {"name": "copy"}, local_id=local_id)
    store.apply_elements([element], sender=via)
    return guid


def renumber(store: Store, dry_run: bool = False, size: int = SIZE):
    if dry_run:
        with store.reading() as s:
            return renumber_own_jobs(s, START, size, "Parent", "tester", dry_run=True)
    with store.atomic() as s:
        return renumber_own_jobs(s, START, size, "Parent", "tester")


def ids(store: Store) -> Dict[str, Optional[int]]:
    return {e.guid: e.local_id for e in store.elements() if e.kind == "Job"}


@pytest.mark.parametrize(
    "vv, expected",
    [
        ({"Ohio": 3}, True),
        ({"ohio": 1, "Ohio~3f9a1c27": 2}, True),  # an incarnation of it, any spelling
        ({"Ohio": 1, "Parent": 1}, False),  # received, then edited here
        ({"Ohioan": 1}, False),
        ({"Ohio~x": 1, "AZ": 1}, False),
        ({}, False),  # the default items: made nowhere
    ],
)
def test_own_only(vv, expected):
    assert own_only(vv, "Ohio") is expected


def test_only_jobs_made_here_outside_the_block_move_in_old_id_order_deleted_ones_too(tmp_path):
    store = make(tmp_path)
    two, one = new_job(store, 2), new_job(store, 1)
    inside = new_job(store, START + 4)
    copy = received(store, 3, {"Parent": 1})
    echo = received(store, 7, {"Ohio": 1})  # made here, sent and come back: not local
    gone = new_job(store, 9)
    with store.atomic() as s:
        s.delete(gone)
    before_gen = store.generation()

    done = renumber(store)

    assert [(e["guid"], e["from"], e["to"]) for e in done] == [
        (one, 1, START + 5),
        (two, 2, START + 6),
        (gone, 9, START + 7),  # its tombstone holds the id: it would take another's
    ]
    held = ids(store)
    assert (held[copy], held[echo], held[gone], held[inside]) == (3, 7, START + 7, START + 4)
    with store.reading() as s:  # nothing live is added to a deleted job
        assert [a for a in s.of_job("Activity", gone) if not a.deleted] == []
    # One transaction, one generation: the activity records, not the jobs.
    assert store.generation() == before_gen + 1
    assert store.get(one).gen < store.generation()
    with store.reading() as s:
        records = [a.fields["message"] for a in s.of_job("Activity", one)]
    assert records == [f"Job renumbered from 1 to {START + 5} when joining Parent"]
    assert renumber(store) == []  # idempotent
    assert store.generation() == before_gen + 1


def test_a_dry_run_changes_nothing(tmp_path):
    store = make(tmp_path)
    new_job(store, 1)
    before = (store.generation(), store.fingerprint(), ids(store))
    assert [(e["from"], e["to"]) for e in renumber(store, dry_run=True)] == [(1, START)]
    assert (store.generation(), store.fingerprint(), ids(store)) == before


def test_a_block_without_room_is_refused_and_nothing_changes(tmp_path):
    store = make(tmp_path)
    for local_id in (1, 2, START):
        new_job(store, local_id)
    before = (store.generation(), ids(store))
    with pytest.raises(ValueError, match="room for 1 more job"):
        renumber(store, size=2)
    assert (store.generation(), ids(store)) == before


def test_new_ids_go_past_the_floor_a_restore_set(tmp_path):
    store = make(tmp_path)
    new_job(store, 1)
    store.new_incarnation(0, job_id_floor=START + 40)
    assert [(e["from"], e["to"]) for e in renumber(store)] == [(1, START + 40)]


@pytest.mark.parametrize("start, size", [(0, 10), (5, 0), (-1, 3)])
def test_a_block_that_is_no_block_is_refused(tmp_path, start, size):
    store = make(tmp_path)
    with store.atomic() as s, pytest.raises(ValueError, match="not a job id block"):
        renumber_own_jobs(s, start, size, "Parent", "tester")
