"""The went-back mode of the repository's renumbering (wmsync/repository/renumbering.py,
``renumber_reused_ids`` and ``held_job_ids``) and of ``replication/renumber``: which jobs
are candidates, which move and where, and that bad input changes nothing."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pytest
from cluster import Clock

from wmsync.client import WMServerClient
from wmsync.errors import WMSyncError
from wmsync.model import Element, new_guid
from wmsync.repository.renumbering import held_job_ids, renumber_reused_ids
from wmsync.repository.store import Store

START, SIZE = 1_000_001, 1_000_000


def make(tmp_path: Any) -> Store:
    return Store(tmp_path / "ohio.sqlite", "Ohio", clock=Clock())


def new_job(store: Store, local_id: int) -> str:
    with store.atomic() as s:
        return s.edit("Job", None, {"name": f"job {local_id}"}, local_id=local_id).guid


def ids(store: Store) -> Dict[str, Optional[int]]:
    return {e.guid: e.local_id for e in store.elements() if e.kind == "Job"}


def test_only_named_jobs_made_since_the_mark_up_to_the_highest_id_move_past_it(
    tmp_path: Any,
) -> None:
    store = make(tmp_path)
    old = new_job(store, START)  # confirmed before the mark
    mark = store.generation()
    kept, reused = new_job(store, START + 1), new_job(store, START + 2)
    beyond = new_job(store, START + 5)  # above the highest id: not a candidate
    guid = new_guid()  # received: never a candidate
    store.apply_elements(
        [Element("Job", guid, {"Parent": 1}, 1000, "Parent", {"name": "c"}, local_id=START + 3)],
        sender="Parent",
    )
    with store.reading() as s:
        found = renumber_reused_ids(s, START, SIZE, START + 4, mark, "tester", dry_run=True)
    assert [(e["guid"], e["from"]) for e in found] == [(kept, START + 1), (reused, START + 2)]
    with store.atomic() as s:
        moved = renumber_reused_ids(s, START, SIZE, START + 4, mark, "tester", guids=[reused])
    assert moved == [{"guid": reused, "from": START + 2, "to": START + 6}]  # past all held
    assert ids(store)[old] == START and ids(store)[kept] == START + 1
    assert ids(store)[beyond] == START + 5
    messages = [e.fields["message"] for e in store.elements() if e.kind == "Activity"]
    assert any(f"from {START + 2} to {START + 6}" in m and "went back" in m for m in messages)
    with store.atomic() as s:  # a second call finds nothing
        assert renumber_reused_ids(s, START, SIZE, START + 4, mark, "tester", guids=[reused]) == []


def test_held_job_ids_names_the_highest_and_the_guids_asked(tmp_path: Any) -> None:
    store = make(tmp_path)
    first, second = new_job(store, START), new_job(store, START + 3)
    new_job(store, 5)  # outside the block
    with store.reading() as s:
        assert held_job_ids(s, START, SIZE, [START, START + 1, START + 3]) == (
            START + 3,
            {START: first, START + 3: second},
        )
        assert held_job_ids(s, 1, 4, []) == (None, {})


@pytest.mark.parametrize(
    "form, field",
    [
        ({"jobIdHigh": 3, "sinceGen": 0, "guids": "x"}, "jobIdHigh"),  # below the block
        ({"jobIdHigh": 2_000_001, "guids": "x"}, "jobIdHigh"),  # past it
        ({"jobIdHigh": START}, "guids"),  # nothing named, not a dry run
        ({"jobIdHigh": START, "sinceGen": -1, "guids": "x"}, "sinceGen"),
    ],
)
def test_bad_went_back_requests_are_refused_and_change_nothing(
    emulator: Callable[..., Any], form: Dict[str, Any], field: str
) -> None:
    server = emulator("Ohio")
    client = WMServerClient(server.url, user="tester")
    job = client.post("jobs/create", jobTypeId=1, name="j")["jobIds"][0]
    before = server.store.fingerprint()
    with pytest.raises(WMSyncError, match=field):
        client.post("replication/renumber", jobIdStart=START, jobIdBlock=SIZE, **form)
    assert server.store.fingerprint() == before
    assert client.get(f"jobs/{job}")["id"] == job
    with pytest.raises(WMSyncError, match="ids"):
        client.get("replication/jobids", jobIdStart=START, jobIdBlock=SIZE, ids="1,x")
