"""The emulator's repository: merge rules, generations, ids, renames, import and export."""

from __future__ import annotations

import gzip

import pytest
from cluster import Clock

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.model import Element, guid_for_name, vv_to_text
from wmsync.repository import catalog, merge
from wmsync.repository.store import ImportRefused, Store, WrongRepository

JOB_GUID = "11111111-1111-4111-8111-111111111111"
DEFAULT_TYPE = guid_for_name("JobType", "Default")


def make_store(tmp_path, name="Parent", **kwargs) -> Store:
    kwargs.setdefault("clock", Clock())
    return Store(tmp_path / f"{name}.sqlite", name, **kwargs)


def job(
    vv, modified=1000, origin="A", name="job", guid=JOB_GUID, local_id=101, deleted=False, **extra
) -> Element:
    fields = {} if deleted else {"name": name, "jobType": DEFAULT_TYPE, **extra}
    return Element("Job", guid, vv, modified, origin, fields, deleted=deleted, local_id=local_id)


def job_type(guid, name, created, vv=None, origin="A", local_id=5) -> Element:
    return Element(
        "JobType",
        guid,
        vv or {origin: 1},
        1000,
        origin,
        {"name": name, "created": str(created)},
        local_id=local_id,
    )


def make_parent(store: Store) -> None:
    store.update_node(store.repository, is_parent=True)


# ------------------------------------------------------------------ the pure merge rule

MERGE_CASES = [
    # (name, local, incoming, action, expected result (None: unchanged))
    ("unknown guid is added", None, job({"B": 1}), merge.ADD, "incoming"),
    ("same version", job({"A": 1}), job({"A": 1}), merge.UNCHANGED, None),
    ("incoming older", job({"A": 2}), job({"A": 1}, name="old"), merge.UNCHANGED, None),
    (
        "incoming newer, slow clock",
        job({"A": 1}, modified=5000),
        job({"A": 1, "B": 1}, modified=10, origin="B", name="new"),
        merge.REPLACE,
        "incoming",
    ),
    (
        "concurrent, different content",
        job({"A": 1}, modified=10),
        job({"B": 1}, modified=20, origin="B", name="b"),
        merge.CONFLICT,
        "incoming",
    ),
    (
        "same vv, different content",
        job({"A": 1}, modified=30, name="restored"),
        job({"A": 1}, modified=20, name="other"),
        merge.CONFLICT,
        "local",
    ),
    ("concurrent, same content", job({"A": 1}), job({"B": 1}, origin="B"), merge.MERGE, "incoming"),
    ("tombstone newer", job({"A": 1}), job({"A": 2}, deleted=True), merge.REPLACE, "incoming"),
    (
        "concurrent edit newer than tombstone revives",
        job({"A": 2}, modified=10, deleted=True),
        job({"A": 1, "B": 1}, modified=99, origin="B", name="edited"),
        merge.CONFLICT,
        "incoming",
    ),
]


@pytest.mark.parametrize(
    ("local", "incoming", "action", "expected"),
    [case[1:] for case in MERGE_CASES],
    ids=[case[0] for case in MERGE_CASES],
)
def test_decide(local, incoming, action, expected):
    decision = merge.decide(local, incoming)
    assert decision.action == action
    if expected is None:
        assert decision.result is None
        return
    source = incoming if expected == "incoming" else local
    assert decision.result is not None
    assert decision.result.same_content(source)
    assert decision.result.modified == source.modified
    assert decision.result.origin == source.origin
    if action in (merge.CONFLICT, merge.MERGE):
        assert decision.local
        assert decision.result.vv == {
            **local.vv,
            **{k: max(v, local.vv.get(k, 0)) for k, v in incoming.vv.items()},
        }
    if action == merge.CONFLICT:
        assert decision.loser is not None
        assert decision.loser.same_content(local if expected == "incoming" else incoming)


def test_decide_is_symmetric():
    a = job({"A": 1}, modified=10, name="a")
    b = job({"B": 1}, modified=10, origin="B", name="b")
    one, two = merge.decide(a, b), merge.decide(b, a)
    assert one.result == two.result
    assert one.result is not None and one.result.origin == "B"  # tie on time: origin wins


def test_plan_renames_orders_by_created_then_guid():
    a = job_type("a" * 8, "Edit", 5)
    b = job_type("b" * 8, "Edit", 3)
    c = job_type("c" * 8, "Edit", 5)
    renames = merge.plan_renames([a, b, c], ["Edit", "Edit_1"])
    assert [(e.guid, n) for e, n in renames] == [("a" * 8, "Edit_2"), ("c" * 8, "Edit_3")]


# ------------------------------------------------------------------ a new repository


def test_new_repository_defaults_identical_everywhere(tmp_path):
    one, two = make_store(tmp_path, "One"), make_store(tmp_path, "Two")
    assert one.generation() == two.generation() == 1
    assert one.fingerprint() == two.fingerprint()
    default = one.get(DEFAULT_TYPE)
    assert default is not None
    assert default.local_id == 1 and default.gen == 1 and dict(default.element.vv) == {}
    assert default.element.modified == 0 and default.element.origin == catalog.DEFAULT_ORIGIN
    assert one.get(guid_for_name("User", "admin")) is not None
    assert one.get(guid_for_name("Group", "Administrators")).local_id == 1


def test_reopening_keeps_data_and_refuses_other_name(tmp_path):
    store = make_store(tmp_path)
    with store.atomic() as s:
        s.edit("User", guid_for_name("User", "bob"), {"userName": "bob"})
    again = Store(tmp_path / "Parent.sqlite", "Parent")
    assert again.generation() == 2
    with pytest.raises(WrongRepository):
        Store(tmp_path / "Parent.sqlite", "Other")


# ------------------------------------------------------------------ generations


def test_local_edit_bumps_vv_and_generation(tmp_path):
    store = make_store(tmp_path, clock_offset_ms=5000)
    with store.atomic() as s:
        first = s.edit("Job", None, {"name": "a", "jobType": DEFAULT_TYPE})
        second = s.edit("Job", first.guid, {"name": "b", "jobType": DEFAULT_TYPE})
    assert second.vv == {"Parent": 2}
    assert second.origin == "Parent"
    assert second.modified > 1_700_000_005_000  # the offset is applied
    stored = store.get(first.guid)
    assert stored.gen == 2 and stored.via == "" and stored.local_id == 1
    assert store.generation() == 2  # one transaction, one generation


def test_transaction_without_change_consumes_no_generation(tmp_path):
    store = make_store(tmp_path)
    with store.atomic() as s:
        s.by_id("Job", 1)
    store.update_node("Child", server_url="http://x", last_sync_gen=7)
    store.reset_node("Child")
    assert store.generation() == 1


def test_failed_transaction_rolls_back_everything(tmp_path):
    store = make_store(tmp_path)
    with pytest.raises(RuntimeError), store.atomic() as s:
        s.edit("Job", None, {"name": "lost"})
        raise RuntimeError("boom")
    assert store.generation() == 1
    assert [e for e in store.elements() if e.kind == "Job"] == []


def test_atomic_inside_atomic_is_a_savepoint(tmp_path):
    store = make_store(tmp_path)
    with store.atomic() as outer:
        kept = outer.edit("Job", None, {"name": "kept"})
        with pytest.raises(RuntimeError), store.atomic() as inner:
            assert inner is outer  # the same transaction and generation
            inner.edit("Job", None, {"name": "undone"})
            raise RuntimeError("boom")
        with store.atomic() as inner:
            also = inner.edit("Job", None, {"name": "also kept"})
    assert store.generation() == 2  # one transaction, one generation
    names = sorted(e.fields["name"] for e in store.elements() if e.kind == "Job")
    assert names == ["also kept", "kept"]
    assert store.get(kept.guid).gen == store.get(also.guid).gen == 2


def test_a_savepoint_that_allocated_the_generation_gives_it_back(tmp_path):
    store = make_store(tmp_path)
    with store.atomic() as outer:
        with pytest.raises(RuntimeError), store.atomic() as inner:
            inner.edit("Job", None, {"name": "undone"})  # allocates generation 2
            raise RuntimeError("boom")
        assert not outer.changed and outer.generation() == 1
        outer.edit("Job", None, {"name": "kept"})
    assert store.generation() == 2
    assert [e.gen for e in store.elements() if e.kind == "Job"] == [2]


def test_another_threads_atomic_is_its_own_transaction(tmp_path):
    import threading

    store = make_store(tmp_path)
    done = threading.Event()

    def other():
        with store.atomic() as s:  # waits for the lock: not a savepoint of the first
            s.edit("Job", None, {"name": "other"})
        done.set()

    with store.atomic() as s:
        s.edit("Job", None, {"name": "first"})
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(0.3)
    thread.join(10)
    assert done.is_set()
    gens = sorted((e.fields["name"], e.gen) for e in store.elements() if e.kind == "Job")
    assert gens == [("first", 2), ("other", 3)]


def test_an_outer_failure_undoes_committed_savepoints(tmp_path):
    store = make_store(tmp_path)
    with pytest.raises(RuntimeError), store.atomic():
        with store.atomic() as inner:
            inner.edit("Job", None, {"name": "inner"})
        raise RuntimeError("boom")
    assert store.generation() == 1
    assert [e for e in store.elements() if e.kind == "Job"] == []
    with store.atomic() as s:  # and the store is usable afterwards, not nested
        s.edit("Job", None, {"name": "after"})
    assert store.generation() == 2


# ------------------------------------------------------------------ import rules


def test_add_writes_exactly_the_incoming_version(tmp_path):
    store = make_store(tmp_path)
    incoming = job({"Ohio": 3}, modified=42, origin="Ohio")
    result = store.apply_elements([incoming], sender="Ohio")
    assert (result.added, result.generation) == (1, 2)
    stored = store.get(JOB_GUID)
    assert stored.element == incoming
    assert stored.via == "Ohio" and stored.gen == 2


def test_import_logs_no_activity_and_is_idempotent(tmp_path):
    store = make_store(tmp_path)
    doc = [
        job({"Ohio": 1}, origin="Ohio"),
        job({"Ohio": 1}, guid="22222222-2222-4222-8222-222222222222", local_id=102),
    ]
    store.apply_elements(doc, sender="Ohio")
    before = store.generation()
    again = store.apply_elements(doc, sender="Ohio")
    assert again.unchanged == 2 and again.added == again.updated == 0
    assert store.generation() == before
    assert not [e for e in store.elements() if e.kind == "Activity"]


def test_older_incoming_leaves_local_and_generation(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 2}, name="new")], sender="A")
    result = store.apply_elements([job({"A": 1}, name="old")], sender="A")
    assert result.unchanged == 1
    assert store.get(JOB_GUID).fields["name"] == "new"
    assert store.generation() == 2


def test_newer_replaces_whatever_the_clock(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 1}, modified=9_000_000)], sender="A")
    later = job({"A": 1, "B": 1}, modified=1, origin="B", name="later")
    result = store.apply_elements([later], sender="B")
    assert result.updated == 1 and not result.conflicts
    assert store.get(JOB_GUID).element.same_content(later)


def test_concurrent_conflict_same_winner_in_both_orders(tmp_path):
    a = job({"A": 1}, modified=100, origin="A", name="from A")
    b = job({"B": 1}, modified=200, origin="B", name="from B")
    one, two = make_store(tmp_path, "One"), make_store(tmp_path, "Two")
    one.apply_elements([a], sender="A")
    two.apply_elements([b], sender="B")
    r1 = one.apply_elements([b], sender="B")
    r2 = two.apply_elements([a], sender="A")
    assert one.fingerprint() == two.fingerprint()
    for store, result in ((one, r1), (two, r2)):
        stored = store.get(JOB_GUID)
        assert stored.fields["name"] == "from B" and stored.element.origin == "B"
        assert dict(stored.element.vv) == {"A": 1, "B": 1}
        assert stored.via == ""  # a resolution is a local version: it travels on
        assert result.conflicts[0]["reason"] == merge.REASON_CONCURRENT
        log = store.conflicts()
        assert len(log) == 1
        assert log[0]["winner"]["origin"] == "B"
        assert log[0]["loser"]["origin"] == "A"
        assert log[0]["loser"]["content"]["name"] == "from A"
    # the resolution supersedes both originals: they no longer change anything
    assert one.apply_elements([a, b], sender="X").unchanged == 2
    assert len(one.conflicts()) == 1


def test_conflicts_name_the_job_the_element_and_the_fields_that_differ(tmp_path):
    store = make_store(tmp_path)
    mine = job({"A": 1}, modified=100, origin="A", name="mine", priority="1", stage="2")
    theirs = job(
        {"B": 1}, modified=200, origin="B", name="theirs", priority="1", stage="3", notes="n"
    )
    hold_guid = "22222222-2222-4222-8222-222222222222"
    hold_a = Element(
        "Hold",
        hold_guid,
        {"A": 1},
        100,
        "A",
        {"job": JOB_GUID, "type": "1", "holdComments": "wait"},
        local_id=4,
    )
    hold_b = Element(
        "Hold",
        hold_guid,
        {"B": 1},
        200,
        "B",
        {"job": JOB_GUID, "type": "1", "holdComments": "go"},
        local_id=4,
    )
    user_guid = guid_for_name("User", "ann")
    user_a = Element("User", user_guid, {"A": 1}, 100, "A", {"userName": "ann", "email": "a"})
    user_b = Element("User", user_guid, {"B": 1}, 200, "B", {"userName": "ann", "email": "b"})
    store.apply_elements([mine, hold_a, user_a], sender="A")
    result = store.apply_elements([theirs, hold_b, user_b], sender="B")
    expected = [
        ("Job", 101, "theirs", ["name", "notes", "stage"]),
        ("Hold", 101, None, ["holdComments"]),  # a hold names its job's id
        ("User", None, "ann", ["email"]),
    ]
    assert [(c["kind"], c["id"], c["name"], c["fields"]) for c in result.conflicts] == expected
    assert [(c["kind"], c["id"], c["name"], c["fields"]) for c in store.conflicts()] == expected
    # a newer delete against the edit: the tombstone wins; every field of the edit
    # differs from it, and the edit still names the job
    gone = job({"A": 2}, modified=300, origin="A", deleted=True)
    result = store.apply_elements([gone], sender="A")
    entry = result.conflicts[0]
    assert (entry["kind"], entry["id"], entry["name"]) == ("Job", 101, "theirs")
    assert entry["fields"] == sorted(theirs.fields)
    assert {k: store.conflicts()[-1][k] for k in ("id", "name", "fields")} == {
        k: entry[k] for k in ("id", "name", "fields")
    }


def test_conflicts_of_the_quick_and_reference_readers_agree(tmp_path):
    """The conflict of a hold whose job arrives in the same document names its id."""
    store = make_store(tmp_path)
    new_job = "33333333-3333-4333-8333-333333333333"
    hold_guid = "44444444-4444-4444-8444-444444444444"
    store.apply_elements(
        [
            Element(
                "Hold", hold_guid, {"A": 1}, 100, "A", {"job": new_job, "heldBy": "x"}, local_id=4
            )
        ],
        sender="A",
    )
    doc = write_doc(
        tmp_path / "in.jxl",
        [
            job({"B": 1}, guid=new_job, local_id=777, name="fresh"),
            Element(
                "Hold", hold_guid, {"B": 1}, 200, "B", {"job": new_job, "heldBy": "y"}, local_id=4
            ),
        ],
    )
    result = store.import_file(doc)
    assert [(c["kind"], c["id"], c["fields"]) for c in result.conflicts] == [
        ("Hold", 777, ["heldBy"])
    ]


def test_equal_vv_different_content_is_a_conflict(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 1}, modified=10, name="restored")], sender="A")
    result = store.apply_elements([job({"A": 1}, modified=20, name="other")], sender="A")
    assert result.conflicts[0]["reason"] == merge.REASON_SAME_VERSION
    assert store.get(JOB_GUID).fields["name"] == "other"


def test_concurrent_same_content_merges_silently(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 1})], sender="A")
    result = store.apply_elements([job({"B": 1}, origin="B")], sender="B")
    assert result.updated == 1 and not result.conflicts and not store.conflicts()
    stored = store.get(JOB_GUID)
    assert dict(stored.element.vv) == {"A": 1, "B": 1} and stored.via == ""


def test_tombstone_deletes_and_newer_concurrent_edit_revives(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 1})], sender="A")
    result = store.apply_elements([job({"A": 2}, modified=50, deleted=True)], sender="A")
    assert result.deleted == 1
    stored = store.get(JOB_GUID)
    assert stored.deleted and dict(stored.fields) == {} and stored.local_id == 101
    with store.reading() as s:
        assert s.by_id("Job", 101) is None
    revive = job({"A": 1, "B": 1}, modified=60, origin="B", name="edited")
    result = store.apply_elements([revive], sender="B")
    assert result.conflicts and result.updated == 1
    stored = store.get(JOB_GUID)
    assert not stored.deleted and stored.fields["name"] == "edited"
    assert dict(stored.element.vv) == {"A": 2, "B": 1}


def test_older_concurrent_edit_does_not_revive(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"A": 2}, modified=500, deleted=True)], sender="A")
    store.apply_elements([job({"A": 1, "B": 1}, modified=60, origin="B")], sender="B")
    assert store.get(JOB_GUID).deleted


def test_kind_mismatch_refuses_the_whole_import(tmp_path):
    store = make_store(tmp_path)
    bad = Element("User", DEFAULT_TYPE, {"A": 1}, 1, "A", {"userName": "x"})
    with pytest.raises(ImportRefused):
        store.apply_elements([job({"A": 1}), bad], sender="A")
    assert store.generation() == 1 and store.get(JOB_GUID) is None


# ------------------------------------------------------------------ ids, references, renames


def test_renumbering_when_id_is_taken(tmp_path):
    store = make_store(tmp_path)
    with store.atomic() as s:
        mine = s.edit("Job", None, {"name": "mine"}, local_id=101)
    incoming = job({"B": 1}, origin="B")
    result = store.apply_elements([incoming], sender="B")
    assert result.renumbered == [{"guid": JOB_GUID, "kind": "Job", "from": 101, "to": 102}]
    assert store.get(JOB_GUID).local_id == 102
    assert store.get(mine.guid).local_id == 101
    # later versions keep the local id, without a report
    result = store.apply_elements([job({"B": 2}, origin="B", name="v2")], sender="B")
    assert result.renumbered == [] and store.get(JOB_GUID).local_id == 102


def test_new_jobs_come_from_own_block(tmp_path):
    store = make_store(tmp_path, "Ohio")
    store.update_node("Ohio", job_id_start=1001, job_id_block=1000)
    store.apply_elements([job({"P": 1}, origin="P", local_id=5)], sender="P")
    with store.atomic() as s:
        first = s.edit("Job", None, {"name": "x"})
        second = s.edit("Job", None, {"name": "y"})
    assert (first.local_id, second.local_id) == (1001, 1002)
    assert store.bulk_insert_jobs(3) == [1003, 1004, 1005]


def test_unknown_references_are_kept_and_warned(tmp_path):
    store = make_store(tmp_path)
    missing = "99999999-9999-4999-8999-999999999999"
    result = store.apply_elements([job({"A": 1}, jobType=missing)], sender="A")
    assert result.added == 1
    assert len(result.warnings) == 1 and missing in result.warnings[0]
    assert store.get(JOB_GUID).fields["jobType"] == missing


def test_reference_resolved_within_the_same_document(tmp_path):
    store = make_store(tmp_path)
    t = job_type("33333333-3333-4333-8333-333333333333", "Survey", 5)
    result = store.apply_elements([job({"A": 1}, jobType=t.guid), t], sender="A")
    assert result.warnings == []


def test_parent_renames_later_created_duplicates(tmp_path):
    store = make_store(tmp_path)
    make_parent(store)
    older = job_type("a0000000-0000-4000-8000-000000000000", "Edit", 10, origin="A")
    newer = job_type("b0000000-0000-4000-8000-000000000000", "Edit", 20, origin="B", local_id=6)
    newest = job_type("c0000000-0000-4000-8000-000000000000", "Edit", 30, origin="C", local_id=7)
    store.apply_elements([newer], sender="B")
    result = store.apply_elements([older, newest], sender="A")
    names = {g: store.get(g).fields["name"] for g in (older.guid, newer.guid, newest.guid)}
    assert names == {older.guid: "Edit", newer.guid: "Edit_1", newest.guid: "Edit_2"}
    renamed = store.get(newer.guid)
    assert renamed.via == "" and renamed.element.origin == "Parent"
    assert dict(renamed.element.vv) == {"B": 1, "Parent": 1}
    assert {r["to"] for r in result.renamed} == {"Edit_1", "Edit_2"}
    # renames happen in the import's own transaction: one generation
    assert store.generation() == 3


def test_child_never_renames(tmp_path):
    store = make_store(tmp_path, "Child")
    a = job_type("a0000000-0000-4000-8000-000000000000", "Edit", 10)
    b = job_type("b0000000-0000-4000-8000-000000000000", "Edit", 20, local_id=6)
    result = store.apply_elements([a, b], sender="Parent")
    assert result.renamed == []
    assert store.get(b.guid).fields["name"] == "Edit"


# ------------------------------------------------------------------ files: import and export


def write_doc(path, elements, repository="Ohio", generation=9):
    header = exchange.ExchangeHeader(repository, generation, 0, 1)
    exchange.write_document(str(path), header, elements)
    return path


def test_import_file_uses_document_repository_as_via(tmp_path):
    store = make_store(tmp_path)
    doc = write_doc(tmp_path / "in.jxl", [job({"Ohio": 1}, origin="Ohio", notes="hi")])
    result = store.import_file(doc)
    assert result.added == 1
    stored = store.get(JOB_GUID)
    assert stored.via == "Ohio" and stored.fields["notes"] == "hi"


def test_gzip_document_is_accepted(tmp_path):
    store = make_store(tmp_path)
    plain = write_doc(tmp_path / "in.jxl", [job({"Ohio": 1})])
    packed = tmp_path / "in.jxl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert store.import_file(packed).added == 1


def test_invalid_document_changes_nothing(tmp_path):
    store = make_store(tmp_path)
    good = [
        job({"Ohio": 1}, guid=f"{i:08d}-1111-4111-8111-111111111111", local_id=i)
        for i in range(1, 6)
    ]
    doc = write_doc(tmp_path / "in.jxl", good)
    text = doc.read_text("utf-8")
    broken = text.replace('vv="Ohio:1"', 'vv="Ohio:zero"', 1)
    assert broken != text
    doc.write_text(broken, "utf-8")
    with pytest.raises(ExchangeFormatError) as info:
        store.import_file(doc)
    assert info.value.line is not None
    assert store.generation() == 1
    assert not [e for e in store.elements() if e.kind == "Job"]


def read_export(info):
    with exchange.read_document(str(info.path)) as reader:
        return reader.header, list(reader)


def test_export_windows(tmp_path):
    store = make_store(tmp_path)
    everything = store.export(tmp_path / "exports")
    header, elements = read_export(everything)
    assert everything.count == 3 and header.generation == 1 == everything.generation
    assert {e.kind for e in elements} == {"JobType", "User", "Group"}

    store.apply_elements([job({"Ohio": 1}, origin="Ohio")], sender="Ohio")  # gen 2
    with store.atomic() as s:  # gen 3
        local = s.edit("Job", None, {"name": "local"})
        s.delete(local.guid)
    window = store.export(tmp_path / "exports", since_gen=1)
    assert window.count == 2 and window.generation == 3
    echo_free = store.export(tmp_path / "exports", since_gen=1, exclude_via="Ohio")
    _, elements = read_export(echo_free)
    assert [(e.guid, e.deleted) for e in elements] == [(local.guid, True)]
    assert store.export(tmp_path / "exports", since_gen=3).count == 0


def test_export_round_trip_converges(tmp_path):
    parent, child = make_store(tmp_path, "Parent"), make_store(tmp_path, "Child")
    with child.atomic() as s:
        created = s.edit("Job", None, {"name": "child job", "jobType": DEFAULT_TYPE})
        s.log_activity(created.guid, "CreateJob", "bob", "created")
    info = child.export(tmp_path / "exports", since_gen=0)
    result = parent.import_file(info.path)
    assert result.added == 2 and result.unchanged == 3
    back = parent.export(tmp_path / "exports", since_gen=0, exclude_via="Child")
    assert child.import_file(back.path).unchanged == 3
    assert parent.fingerprint() == child.fingerprint()


# ------------------------------------------------------------------ nodes and bulk loading


def test_nodes_watermark_only_moves_forward(tmp_path):
    store = make_store(tmp_path)
    node = store.update_node(
        "Ohio", server_url="http://o", is_connected=True, last_sync_gen=10, sync_id="s1"
    )
    assert (node.id, node.last_sync_gen, node.sync_id) == (1, 10, "s1")
    node = store.update_node("Ohio", last_sync_gen=4, stamp_last_sync=True)
    assert node.last_sync_gen == 10 and node.last_sync is not None
    assert node.server_url == "http://o"
    assert store.reset_node("Ohio") and not store.reset_node("Nobody")
    node = store.update_node("Ohio", last_sync_gen=3)
    assert node.last_sync_gen == 3 and node.sync_id is None
    assert store.nodes()[0].to_dict()["lastSyncGen"] == 3
    assert store.generation() == 1


def test_bulk_insert_and_update(tmp_path):
    store = make_store(tmp_path)
    ids = store.bulk_insert_jobs(500)
    assert ids == list(range(1, 501)) and store.generation() == 2
    assert store.bulk_update_jobs([1, 2, 999], {"priority": "3"}) == 2
    assert store.generation() == 3
    assert store.export(tmp_path / "x", since_gen=2).count == 2
    job1 = store.by_id("Job", 1)
    assert dict(job1.element.vv) == {"Parent": 2} and job1.fields["priority"] == "3"


def test_vv_text_of_fingerprint_is_sorted(tmp_path):
    store = make_store(tmp_path)
    store.apply_elements([job({"Z": 1, "A": 2})], sender="Z")
    assert store.fingerprint()[JOB_GUID][2] == vv_to_text({"A": 2, "Z": 1})


def test_catalog_has_comment_activity():
    assert any(a["name"] == "Comment" for a in catalog.ACTIVITY_TYPES)
    assert [p["value"] for p in catalog.JOB_PRIORITIES] == [0, 1, 2, 3, 4, 5]


def test_a_conflict_log_from_before_gains_the_new_columns(tmp_path):
    import sqlite3

    store = make_store(tmp_path)
    store.apply_elements([job({"A": 1}, modified=100, name="a")], sender="A")
    store.apply_elements([job({"B": 1}, modified=200, origin="B", name="b")], sender="B")
    with sqlite3.connect(str(store.path)) as conn:  # as files made before them were
        for column in ("job_id", "name", "fields"):
            conn.execute(f"ALTER TABLE conflicts DROP COLUMN {column}")
    reopened = make_store(tmp_path)
    assert [(c["id"], c["name"], c["fields"]) for c in reopened.conflicts()] == [(None, None, [])]
    reopened.apply_elements([job({"C": 1}, modified=300, origin="C", name="c")], sender="C")
    assert reopened.conflicts()[-1]["fields"] == ["name"]
