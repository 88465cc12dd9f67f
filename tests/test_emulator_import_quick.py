"""The repository's quick import path (quick.read_records + Importer.add_records).

``Store.import_file`` reads documents through a parser target and applies plain records;
whatever the quick reader cannot vouch for (``NotCertain``) goes through the reference
reader (``read_document`` + ``Importer.add``). These tests hold the quick path to the reference
one: the same answer, the same stored rows, conflicts and generations, the same errors.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from cluster import Clock
from hypothesis import given, settings
from hypothesis import strategies as st

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.model import Element, guid_for_name
from wmsync.repository import importing, quick, tables
from wmsync.repository.store import ImportRefused, Store

DEFAULT_TYPE = guid_for_name("JobType", "Default")


def guid(n: int) -> str:
    return f"{n:08x}-1111-4111-8111-111111111111"


def job(n, vv, *, local_id=None, modified=1000, origin="Ohio", deleted=False, **fields):
    content = {} if deleted else {"name": f"job {n}", "jobType": DEFAULT_TYPE, **fields}
    return Element(
        "Job",
        guid(n),
        vv,
        modified,
        origin,
        content,
        deleted=deleted,
        local_id=n if local_id is None else local_id,
    )


def write_doc(path, elements, repository="Ohio"):
    exchange.write_document(str(path), exchange.ExchangeHeader(repository, 9, 0, 1), elements)
    return path


def base_store(tmp_path) -> Store:
    """A parent holding a few versions the document below meets in every way."""
    store = Store(tmp_path / "base.sqlite", "Parent", clock=Clock())
    store.update_node("Parent", is_parent=True)
    store.apply_elements(
        [
            job(1, {"Ohio": 1}),  # same version comes
            job(2, {"Ohio": 2}),  # older comes
            job(3, {"Ohio": 1}),  # newer comes
            job(4, {"Parent": 1}, origin="Parent", modified=10),  # concurrent edit comes
            job(5, {"Parent": 1}, origin="Parent"),  # concurrent, same content
            job(6, {"Ohio": 1}),  # deleted by the document
            job(7, {"Ohio": 1}, local_id=500),  # holds id 500
            Element(
                "JobType",
                guid(8),
                {"Parent": 1},
                5,
                "Parent",
                {"name": "Survey", "created": "5"},
                local_id=7,
            ),
            job(9, {"Ohio": 1}),  # is a Job here
        ],
        sender="Ohio",
    )
    return store


def incoming(tag: str = "") -> list:
    """Every case of the merge rule, ids and references, in one document."""
    return [
        job(1, {"Ohio": 1}),  # unchanged (same)
        job(2, {"Ohio": 1}, name="old"),  # unchanged (older)
        job(3, {"Ohio": 2}, name="newer" + tag),  # replaced
        job(4, {"Ohio": 1}, modified=20, name="theirs"),  # conflict, theirs wins
        job(5, {"Ohio": 1}, origin="Ohio"),  # merged vv, no conflict
        job(6, {"Ohio": 2}, deleted=True),  # tombstone
        job(20, {"Ohio": 1}, local_id=500),  # id taken: renumbered
        job(21, {"Ohio": 1}, notes="a <note> & more\nlines" + tag),  # new, with a note
        job(22, {"Ohio": 1}, deleted=True),  # new tombstone
        Element("Job", guid(23), {"Ohio": 1}, 1, "Ohio", {"name": "no id"}),  # needs an id
        Element(
            "User", guid(24), {"Ohio": 1}, 1, "Ohio", {"userName": "u24"}, local_id=3
        ),  # users get no id
        Element(
            "JobType",
            guid(25),
            {"Ohio": 1},
            9,
            "Ohio",
            {"name": "Survey", "created": "9"},
            local_id=8,
        ),  # duplicate name: renamed
        Element(
            "Hold", guid(26), {"Ohio": 1}, 1, "Ohio", {"job": guid(99), "type": "1"}, local_id=1
        ),  # unknown job: a warning
        Element(
            "Activity",
            guid(27),
            {"Ohio": 1},
            1,
            "Ohio",
            {"job": guid(21), "type": "3", "message": "hi"},
        ),
        job(21, {"Ohio": 2}, name="twice"),  # same GUID again, newer
        job(28, {"Ohio": 1}, local_id=28),
        job(28, {"Ohio": 1}, local_id=28),  # and again, the same
        job(2, {"Ohio": 3}, name="third"),  # an earlier GUID, newer
        job(
            29,
            {"Ohio": 1},
            name="tab\x0b\ud800 \ue0000041",  # escaped content
            notes="\x00\ue000",
        ),
    ]


def copy(tmp_path, base: Store, name: str) -> Store:
    target = tmp_path / f"{name}.sqlite"
    with sqlite3.connect(str(base.path)) as src, sqlite3.connect(str(target)) as dst:
        src.backup(dst)
    return Store(target, base.repository, clock=Clock(2_000_000_000_000))


def state(store: Store):
    rows = [
        (
            e.guid,
            e.kind,
            e.local_id,
            dict(e.fields),
            dict(e.element.vv),
            e.element.modified,
            e.element.origin,
            e.deleted,
            e.via,
            e.gen,
        )
        for e in store.elements()
    ]
    conflicts = [{k: v for k, v in c.items() if k != "time"} for c in store.conflicts()]
    return sorted(rows), conflicts, store.generation()


def answer(result):
    found = result.to_dict()
    del found["importTime"]
    return found


def reference_import(store: Store, path) -> dict:
    """What ``import_file`` did before the quick path: read_document + Importer.add."""
    with exchange.read_document(str(path)) as reader:
        with store.atomic() as session:
            importer = importing.Importer(session, reader.header.repository)
            importer.add(reader)
            return answer(importer.finish())


@pytest.mark.parametrize("batch", [500, 4, 1])
def test_quick_import_gives_the_reference_answer_and_rows(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(importing, "IMPORT_BATCH", batch)
    base = base_store(tmp_path)
    doc = write_doc(tmp_path / "in.jxl", incoming())
    quick, reference = copy(tmp_path, base, "quick"), copy(tmp_path, base, "reference")

    def refuse(*args, **kwargs):
        raise AssertionError("a valid document took the reference pass")

    monkeypatch.setattr(exchange, "read_document", refuse)
    got = answer(quick.import_file(doc))
    monkeypatch.undo()
    monkeypatch.setattr(importing, "IMPORT_BATCH", batch)
    expected = reference_import(reference, doc)
    assert got == expected
    assert state(quick) == state(reference)
    # every branch was taken
    assert got["added"] and got["updated"] and got["unchanged"] and got["deleted"]
    assert got["conflicts"] and got["renumbered"] and got["renamed"] and got["warnings"]
    # and again: idempotent, the same as the reference
    assert answer(quick.import_file(doc)) == reference_import(reference, doc)
    assert state(quick) == state(reference)


def test_what_the_quick_reader_cannot_vouch_for_takes_the_reference_pass(tmp_path, monkeypatch):
    """An attribute with "&" (libxml2 hands it to a target still escaped), text where the
    writer puts none, a comment inside: the reference reader reads these documents."""
    base = base_store(tmp_path)
    plain = write_doc(tmp_path / "plain.jxl", incoming(" & co"))
    text = plain.read_text("utf-8")
    variants = {
        "amp": text,  # the name of job 3 holds "&"
        "comment": text.replace("<Job ", "<!-- c --><Job ", 1),
        "space in element": text.replace("/>\n<Job", ">\n</Job>\n<Job", 1),
    }
    calls = []
    real = exchange.read_document

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for name, body in variants.items():
        doc = tmp_path / f"{name}.jxl"
        doc.write_text(body, "utf-8")
        quick, reference = copy(tmp_path, base, f"q-{name}"), copy(tmp_path, base, f"r-{name}")
        monkeypatch.setattr(exchange, "read_document", spy)
        got = answer(quick.import_file(doc))
        monkeypatch.undo()
        assert len(calls) == 1, name
        calls.clear()
        assert got == reference_import(reference, doc), name
        assert state(quick) == state(reference), name


def test_quick_records_match_the_reference_elements(tmp_path):
    doc = write_doc(tmp_path / "in.jxl", incoming())
    with quick.read_records(str(doc)) as records:
        header = records.header
        read = [r for batch in records.batches() for r in batch]
    with exchange.read_document(str(doc)) as reader:
        assert reader.header == header
        expected = [
            (e.kind, e.guid, e.local_id, e.vv, e.modified, e.origin, e.deleted, dict(e.fields))
            for e in reader
        ]
    assert [
        (k, g, i, exchange.vv_from_text(v), m, o, d, f) for k, g, i, v, m, o, d, f in read
    ] == expected


@pytest.mark.parametrize(
    "old, new",
    [
        ('vv="Ohio:1"', 'vv="Ohio:zero"'),
        ('id="21"', 'id="0"'),
        ('name="job 21"', 'nmae="job 21"'),
        ("</JobExchange>", ""),
        ("<Job ", "<Jobs "),
        (
            "<?xml version='1.0' encoding='UTF-8'?>",
            "<?xml version='1.0' encoding='UTF-8'?><!DOCTYPE x [<!ENTITY e 'x'>]>",
        ),
    ],
)
def test_invalid_document_same_error_and_nothing_changed(tmp_path, old, new):
    base = base_store(tmp_path)
    doc = write_doc(tmp_path / "in.jxl", incoming())
    text = doc.read_text("utf-8")
    assert old in text
    doc.write_text(text.replace(old, new, 1), "utf-8")
    with pytest.raises(ExchangeFormatError) as expected:
        exchange.validate_file(str(doc))
    store = copy(tmp_path, base, "target")
    before = state(store)
    with pytest.raises(ExchangeFormatError) as got:
        store.import_file(doc)
    assert (str(got.value), got.value.line, got.value.element) == (
        str(expected.value),
        expected.value.line,
        expected.value.element,
    )
    assert state(store) == before


def test_kind_clash_refused_and_nothing_changed(tmp_path):
    base = base_store(tmp_path)
    clash = Element("Hold", guid(9), {"Ohio": 5}, 1, "Ohio", {"job": guid(1)}, local_id=3)
    doc = write_doc(tmp_path / "in.jxl", [*incoming(), clash])
    store = copy(tmp_path, base, "target")
    before = state(store)
    with pytest.raises(ImportRefused, match="is a Hold in the document but a Job here"):
        store.import_file(doc)
    assert state(store) == before


def test_fields_json_is_the_shared_encoding():
    fields = {"z": "1", "name": 'é "q" \\ \n\t\u2028 😀', "a": "", "\u00e9": "x"}
    assert tables.fields_json(fields) == tables.dumps(fields)
    assert tables.fields_json({}) == tables.dumps({}) == "{}"
    lone = {"a": "x\ud800y", "b": "\udfff"}  # SQLite cannot hold these as UTF-8
    assert tables.fields_json(lone) == tables.dumps(lone)
    assert json.loads(tables.dumps(lone)) == lone


@given(st.dictionaries(st.text(), st.text(), max_size=12))
@settings(max_examples=300, deadline=None)
def test_both_field_encoders_write_what_dumps_writes(fields):
    """The C encoder made once (where this Python has it) and the quoted fallback."""
    for encode in {tables._encode_fields, tables._quoted_fields}:
        assert tables._storable(encode(fields)) == tables.dumps(fields)
