"""Content that XML 1.0 cannot hold travels escaped and comes back identical
(docs/design.md §4, "What the exchange carries"), through the exchange and through the
repository's import (quick and reference readers alike), and text up to the API's limit
passes the parser without lxml's huge_tree mode."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmsync import exchange
from wmsync.exchange import checks
from wmsync.model import KINDS, MAX_TEXT_CHARS, Element
from wmsync.repository import quick
from wmsync.repository.store import Store

G = "00000000-0000-4000-8000-0000000000{:02x}"
HEADER = exchange.ExchangeHeader("Ohio", 3, 0, 1)

#: Per kind, the fields of free text (xs:string in jxl.xsd), notes included.
TEXT_FIELDS = {
    kind: sorted(
        [
            name
            for name, rule in checks.fast_shapes()[kind].attrs.items()
            if rule is None and name != exchange.ESCAPED_FLAG
        ]
        + (["notes"] if kind == "Job" else [])
    )
    for kind in KINDS
}

# Every code point, surrogates included (hypothesis leaves them out by default).
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40)
TRICKY = st.sampled_from(
    [
        "\x0b",
        "\x00",
        "\ud800",
        "\udfff",
        "\ufffe",
        "\uffff",
        "\ue000",
        "\ue0000041",
        "\ue000zz",
        "&amp;",
        "&#38;",
        "<a>",
        '"',
        "\r\n",
        "\t",
        "]]>",
        "😀",
        "\ud83d\ude00",
    ]
)
VALUES = st.lists(st.one_of(ANY_TEXT, TRICKY), max_size=4).map("".join)


@st.composite
def elements(draw):
    kind = draw(st.sampled_from(KINDS))
    names = draw(st.lists(st.sampled_from(TEXT_FIELDS[kind]), min_size=1, unique=True))
    fields = {name: draw(VALUES) for name in names}
    return Element(
        kind,
        G.format(1),
        {"Ohio": 1},
        5,
        "Ohio",
        fields,
        local_id=7 if kind in ("JobType", "Group", "Job", "Hold") else None,
    )


def roundtrip(element):
    out = io.BytesIO()
    exchange.write_document(out, HEADER, [element])
    with exchange.read_document(io.BytesIO(out.getvalue())) as reader:
        return out.getvalue(), list(reader)


@settings(max_examples=300, deadline=None)
@given(elements())
def test_any_text_roundtrips_through_the_document(element):
    data, read = roundtrip(element)
    assert read == [element]
    # The quick reader agrees, or gives up (NotCertain) on an attribute with "&", which
    # libxml2 hands a parser target still escaped; escaped text never makes it give up.
    vouched = not any("&" in v for k, v in element.fields.items() if k != "notes")
    try:
        with quick.read_records(io.BytesIO(data)) as records:
            got = [exchange.to_element(r) for batch in records.batches() for r in batch]
    except quick.NotCertain:
        assert not vouched
    else:
        assert got == [element]


def json_safe(text):
    """JSON (the REST API's format, and the store's) reads a high surrogate followed by
    a low one as one character: no value the API accepts holds such a pair apart."""
    return json.loads(json.dumps(text)) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elements())
def test_any_text_roundtrips_through_the_repository_import(element):
    if not all(json_safe(v) for v in element.fields.values()):
        return
    with tempfile.TemporaryDirectory() as folder:
        doc = Path(folder) / "in.jxl"
        exchange.write_document(str(doc), HEADER, [element])
        store = Store(Path(folder) / "r.sqlite", "Parent")
        assert store.import_file(doc).added == 1
        assert dict(store.get(element.guid).fields) == dict(element.fields)
        info = store.export(Path(folder) / "out")  # and out again
        with exchange.read_document(str(info.path)) as reader:
            again = [e for e in reader if e.guid == element.guid]
        assert [dict(e.fields) for e in again] == [dict(element.fields)]


def test_ordinary_text_is_written_as_it_is():
    element = Element(
        "Job",
        G.format(2),
        {"Ohio": 1},
        5,
        "Ohio",
        {"name": "looks like \ue0000041 an escape", "notes": "plain"},
    )
    data, read = roundtrip(element)
    assert b'escaped="1"' not in data and read == [element]
    bad = Element(
        "Job",
        G.format(2),
        {"Ohio": 1},
        5,
        "Ohio",
        {"name": "looks like \ue0000041 an escape", "notes": "tab\x0b"},
    )
    data, read = roundtrip(bad)
    assert b'escaped="1"' in data and read == [bad]


def test_a_broken_escape_is_refused_with_its_line(tmp_path):
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<JobExchange version="1" repository="Ohio" generation="1" sinceGen="0" '
        'exportTime="0">\n'
        f'<Job guid="{G.format(3)}" vv="Ohio:1" modified="1" origin="Ohio" escaped="1" '
        'name="x\ue000zz"/>\n</JobExchange>\n'
    )
    doc = tmp_path / "bad.jxl"
    doc.write_text(text, "utf-8")
    with pytest.raises(exchange.ExchangeFormatError) as info:
        exchange.validate_file(str(doc))
    assert info.value.line == 3 and info.value.element == "Job"
    store = Store(tmp_path / "r.sqlite", "Parent")
    before = store.generation()
    with pytest.raises(exchange.ExchangeFormatError) as again:
        store.import_file(doc)
    assert (again.value.line, str(again.value)) == (3, str(info.value))
    assert store.generation() == before


@pytest.mark.parametrize("escaped", [False, True])
def test_text_up_to_the_api_limit_passes_the_parser(tmp_path, escaped):
    """The longest field the API accepts, in its most expensive written form (every
    character escaped), in an attribute and in the note, without huge_tree."""
    filler = "\x0b" if escaped else '"'
    element = Element(
        "Job",
        G.format(4),
        {"Ohio": 1},
        5,
        "Ohio",
        {
            "description": filler * MAX_TEXT_CHARS,
            "notes": ("\ud800" if escaped else "<") * MAX_TEXT_CHARS,
            "name": "big",
        },
        local_id=9,
    )
    doc = tmp_path / "big.jxl"
    exchange.write_document(str(doc), HEADER, [element])
    with exchange.read_document(str(doc)) as reader:
        assert list(reader) == [element]
    store = Store(tmp_path / "r.sqlite", "Parent")
    assert store.import_file(doc).added == 1
    assert dict(store.get(element.guid).fields) == dict(element.fields)
