"""Holds and activity records follow their job (docs/design.md §4, "References after a
delete"), in the SQLite repository: a job's delete deletes them with it, keeping their
content; a hold that arrives for a job deleted here is deleted on arrival; a job revived
by a newer concurrent edit comes back with them. Repositories exchange real documents
(export, then import of the file)."""

from __future__ import annotations

import io

import pytest
from cluster import Clock

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.model import Element, guid_for_name
from wmsync.repository.store import Store

DEFAULT_TYPE = guid_for_name("JobType", "Default")


def make_store(tmp_path, name, start=1_700_000_000_000) -> Store:
    return Store(tmp_path / f"{name}.sqlite", name, clock=Clock(start))


def ship(source: Store, target: Store, tmp_path):
    """Everything *source* holds, as one exchange document, imported into *target*."""
    export = source.export(tmp_path / f"exports-{source.repository}")
    return target.import_file(export.path)


def new_job(store: Store, name="job"):
    with store.atomic() as s:
        job = s.edit("Job", None, {"name": name, "jobType": DEFAULT_TYPE})
        s.log_activity(job.guid, "CreateJob", "tester", f"Job {job.local_id} created")
    return job


def place_hold(store: Store, job_guid: str, comments="waiting"):
    with store.atomic() as s:
        hold = s.edit(
            "Hold",
            None,
            {
                "job": job_guid,
                "type": "1",
                "heldBy": "tester",
                "holdDate": "1",
                "holdComments": comments,
            },
        )
        s.log_activity(job_guid, "AddHold", "tester", f"Hold {hold.local_id} added")
    return hold


def delete_job(store: Store, job_guid: str) -> None:
    with store.atomic() as s:
        s.delete(job_guid)


def edit_job(store: Store, job_guid: str, description: str) -> None:
    with store.atomic() as s:
        current = s.get(job_guid)
        fields = dict(current.fields)
        fields["description"] = description
        s.edit("Job", job_guid, fields)


def children(store: Store, job_guid: str):
    """``{guid: element}`` of the holds and activity records of a job, tombstones too
    (a tombstone deleted on purpose names no job: see ``purposely``)."""
    return {
        e.guid: e.element
        for e in store.elements()
        if e.kind in ("Hold", "Activity") and e.fields.get("job") == job_guid
    }


def live_children(store: Store, job_guid: str):
    return {g: e for g, e in children(store, job_guid).items() if not e.deleted}


def test_deleting_a_job_deletes_its_holds_and_activity_keeping_their_content(tmp_path):
    store = make_store(tmp_path, "Parent")
    job = new_job(store)
    hold = place_hold(store, job.guid)
    before = children(store, job.guid)
    assert len(before) == 3  # the hold, "created" and "hold added"

    delete_job(store, job.guid)

    after = children(store, job.guid)
    assert set(after) == set(before)
    for guid, element in after.items():
        assert element.deleted
        assert dict(element.fields) == dict(before[guid].fields)  # content kept
        assert element.vv["Parent"] == before[guid].vv["Parent"] + 1  # a local edit
        assert store.get(guid).via == ""
    with store.reading() as s:
        assert s.of_job("Hold", job.guid) == []
        assert s.get_live(hold.guid) is None


def test_a_job_tombstone_that_arrives_deletes_the_holds_placed_here(tmp_path):
    parent, child = make_store(tmp_path, "Parent"), make_store(tmp_path, "Ohio")
    job = new_job(parent)
    ship(parent, child, tmp_path)
    hold = place_hold(child, job.guid)  # placed on the child, concurrently with...
    delete_job(parent, job.guid)  # ...the job's delete on the parent

    result = ship(parent, child, tmp_path)

    assert result.conflicts == []
    assert live_children(child, job.guid) == {}
    found = child.get(hold.guid)
    assert found.deleted and found.via == ""  # the child's own edit: it travels on
    assert found.fields["holdComments"] == "waiting"
    assert found.element.vv == {"Ohio": 2}


def test_a_hold_that_arrives_for_a_job_deleted_here_is_deleted_on_arrival(tmp_path):
    parent, child = make_store(tmp_path, "Parent"), make_store(tmp_path, "Ohio")
    job = new_job(parent)
    ship(parent, child, tmp_path)
    hold = place_hold(child, job.guid)
    delete_job(parent, job.guid)

    result = ship(child, parent, tmp_path)

    assert result.conflicts == []
    assert live_children(parent, job.guid) == {}
    found = parent.get(hold.guid)
    assert found.deleted and found.via == ""
    assert found.element.vv == {"Ohio": 1, "Parent": found.element.vv["Parent"]}
    assert found.fields["holdComments"] == "waiting"
    # Back on the child, the parent's tombstone supersedes the live hold: the job's
    # tombstone and the hold's agree, and the two repositories hold the same.
    ship(parent, child, tmp_path)
    assert live_children(child, job.guid) == {}
    assert child.fingerprint() == parent.fingerprint()


def test_two_repositories_deleting_the_same_hold_with_its_job_merge_silently(tmp_path):
    parent = make_store(tmp_path, "Parent")
    ohio, az = make_store(tmp_path, "Ohio"), make_store(tmp_path, "AZ", start=1_800_000_000_000)
    job = new_job(parent)
    place_hold(parent, job.guid)
    ship(parent, ohio, tmp_path)
    ship(parent, az, tmp_path)
    delete_job(ohio, job.guid)  # the same delete, made twice, each with its cascade
    delete_job(az, job.guid)

    first = ship(ohio, az, tmp_path)
    second = ship(az, ohio, tmp_path)

    assert first.conflicts == [] and second.conflicts == []
    assert ohio.conflicts() == [] and az.conflicts() == []
    assert ohio.fingerprint() == az.fingerprint()
    for element in children(az, job.guid).values():
        assert element.deleted
        assert element.vv == {"Parent": element.vv["Parent"], "Ohio": 1, "AZ": 1}
    again = az.generation(), ohio.generation()
    ship(ohio, az, tmp_path)
    ship(az, ohio, tmp_path)
    assert (az.generation(), ohio.generation()) == again  # nothing moves any more


def test_a_revived_job_comes_back_with_what_was_deleted_with_it_only(tmp_path):
    parent = make_store(tmp_path, "Parent")
    child = make_store(tmp_path, "Ohio", start=1_700_000_100_000)  # its edit is newer
    job = new_job(parent)
    hold = place_hold(parent, job.guid)
    with parent.atomic() as s:
        purposely = s.log_activity(job.guid, "Comment", "tester", "to be deleted on purpose")
    ship(parent, child, tmp_path)
    before = live_children(parent, job.guid)
    with parent.atomic() as s:
        s.delete(purposely.guid)  # deleted on purpose: stays deleted
        s.delete(job.guid)
    assert live_children(parent, job.guid) == {}
    edit_job(child, job.guid, "edited after the delete")  # concurrent, and newer

    result = ship(child, parent, tmp_path)

    # The delete lost to the newer edit (and is logged); nothing else is a conflict.
    assert [(c["kind"], c["loser"]["origin"]) for c in result.conflicts] == [("Job", "Parent")]
    assert parent.get(job.guid).fields["description"] == "edited after the delete"
    revived = live_children(parent, job.guid)
    assert set(revived) == set(before) - {purposely.guid}
    for guid, element in revived.items():
        assert dict(element.fields) == dict(before[guid].fields)
        assert parent.get(guid).via == ""
    assert parent.get(purposely.guid).deleted
    with parent.reading() as s:
        assert [h.guid for h in s.of_job("Hold", job.guid)] == [hold.guid]

    ship(parent, child, tmp_path)
    assert child.fingerprint() == parent.fingerprint()
    assert child.conflicts() == []  # the child's edit won there: nothing to log
    generations = parent.generation(), child.generation()
    ship(child, parent, tmp_path)
    ship(parent, child, tmp_path)
    assert (parent.generation(), child.generation()) == generations


def test_a_deleted_job_that_stays_deleted_keeps_its_holds_deleted(tmp_path):
    parent, child = make_store(tmp_path, "Parent"), make_store(tmp_path, "Ohio")
    job = new_job(parent)
    place_hold(parent, job.guid)
    ship(parent, child, tmp_path)
    edit_job(child, job.guid, "edited before the delete")
    ship(child, parent, tmp_path)
    delete_job(parent, job.guid)  # newer than the edit, which the parent already holds

    ship(parent, child, tmp_path)

    assert child.get(job.guid).deleted
    assert live_children(child, job.guid) == {}
    assert child.fingerprint() == parent.fingerprint()
    assert child.conflicts() == [] and parent.conflicts() == []


# ------------------------------------------------------------------ the exchange carries it


def _tombstone(kind: str, fields) -> Element:
    return Element(
        kind, "22222222-2222-4222-8222-222222222222", {"A": 2}, 5, "A", fields, deleted=True
    )


def test_a_tombstone_deleted_with_its_job_travels_with_its_content():
    fields = {
        "job": "11111111-1111-4111-8111-111111111111",
        "type": "1",
        "holdComments": "line\x0bbreak",
        "holdDate": "3",
    }
    element = _tombstone("Hold", fields)
    out = io.BytesIO()
    header = exchange.ExchangeHeader(repository="A", generation=1, since_gen=0, export_time=1)
    exchange.write_document(out, header, [element])
    with exchange.read_document(io.BytesIO(out.getvalue())) as reader:
        [back] = list(reader)
    assert back.deleted and dict(back.fields) == fields
    assert back.content_hash() == element.content_hash()


@pytest.mark.parametrize("kind", ["Job", "JobType"])
def test_only_holds_and_activity_records_keep_content_in_a_tombstone(kind):
    header = exchange.ExchangeHeader(repository="A", generation=1, since_gen=0, export_time=1)
    with pytest.raises(ExchangeFormatError, match="tombstone"):
        exchange.write_document(io.BytesIO(), header, [_tombstone(kind, {"name": "x"})])
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<JobExchange version="1" repository="A" generation="1" sinceGen="0" '
        'exportTime="1">\n'
        f'<Deleted kind="{kind}" guid="22222222-2222-4222-8222-222222222222" vv="A:2" '
        'modified="5" origin="A" job="11111111-1111-4111-8111-111111111111"/>\n'
        "</JobExchange>\n"
    ).encode()
    with pytest.raises(ExchangeFormatError, match="tombstone of a"):
        with exchange.read_document(io.BytesIO(document)) as reader:
            list(reader)
