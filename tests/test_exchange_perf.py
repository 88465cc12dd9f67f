"""The exchange reader's compiled checks agree with jxl.xsd (the reference).

The reader first checks each element against checks compiled from the schema and asks
the XMLSchema only when they do not accept it (wmsync/exchange/checks.py). That
is safe as long as the compiled checks never accept what the schema refuses; these tests
prove it on a corpus of valid and invalid elements, and that the compiled checks really
accept what the writer writes (otherwise they would save nothing).
"""

from __future__ import annotations

import io
import itertools
import uuid

import pytest
from lxml import etree

from wmsync import exchange
from wmsync.exchange import checks, schema
from wmsync.model import FIELDS, KINDS, REFERENCES, Element

G = "0f8fad5b-d9cb-469f-a165-70867728950e"
BASE = {"guid": G, "vv": "R:1", "modified": "5", "origin": "R"}

# Values that stress each simple type: lexical edge cases, white space, long range,
# unicode digits, percent-encoding, empty text.
TRICKY = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "+1",
    "-0",
    "00",
    "007",
    " 1",
    "1 ",
    "1\t",
    "\n1",
    "1 2",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678",
    "1234567890123456789",
    "99999999999999999999",
    "1.0",
    "1e3",
    "0x10",
    "\u0661",
    "\uff11",
    "x",
    "high",
    G,
    G.upper(),
    G[:-1],
    G + "0",
    " " + G,
    G.replace("-", ""),
    "{" + G + "}",
    "R:1",
    "R:0",
    "R:1 S:2",
    "R:1  S:2",
    " R:1",
    "R:1 ",
    "R",
    ":1",
    "R:",
    "R:x",
    "Ohio%20Repository:2",
    "Ohio Repository:2",
    "a%2:1",
    "a%zz:1",
    "R:1234567890123456789",
    "R:-1",
    "R~.-_:3",
    "Job",
    "Hold",
    "Note",
    "job",
    "Deleted",
    "ümlaut",
    "a\u00a0b",
]


def _schema():
    return schema.element_schema()


def _fast(node):
    shape = checks.fast_shapes().get(str(node.tag))
    attrs = dict(node.items())
    return shape is not None and checks.fast_valid(node, attrs, shape)


def _check(node):
    fast = _fast(node)
    reference = _schema().validate(node)
    assert not (fast and not reference), etree.tostring(node)
    return fast, reference


def _valid_elements():
    for kind in KINDS:
        references = REFERENCES.get(kind, {})
        fields = {
            name: G if name in references else "1" for name in FIELDS[kind] if name != "notes"
        }
        yield Element(kind, G, {"R": 1}, 5, "R", {}, local_id=7)
        yield Element(kind, G, {"R": 1, "Ohio Repository": 2}, -5, "R", fields)
    yield Element("Job", G, {"R": 1}, 5, "R", {"notes": "some\ntext"})
    yield Element("Job", G, {"R": 1}, 5, "R", {"notes": ""})
    yield Element("Hold", G, {}, 5, "R", {}, deleted=True, local_id=3)


def _nodes_of(elements):
    buffer = io.BytesIO()
    header = exchange.ExchangeHeader("R", 1, 0, 1)
    exchange.write_document(buffer, header, elements)
    root = etree.fromstring(buffer.getvalue(), exchange.new_parser())
    return list(root)


def test_every_kind_compiles_to_real_checks():
    shapes = checks.fast_shapes()
    assert set(shapes) == {*KINDS, "Deleted"}
    for tag, shape in shapes.items():
        assert {"guid", "vv", "modified", "origin"} <= shape.required, tag
        assert checks._NEVER not in shape.attrs.values(), tag
        assert shape.note == (tag == "Job")
    assert set(shapes["Job"].attrs) == {
        *FIELDS["Job"],
        "guid",
        "id",
        "vv",
        "modified",
        "escaped",
        "origin",
    } - {"notes"}


def test_the_fast_checks_accept_what_the_writer_writes():
    for node in _nodes_of(_valid_elements()):
        assert _check(node) == (True, True), etree.tostring(node)


@pytest.mark.parametrize("tag", [*KINDS, "Deleted"])
def test_never_accepts_what_the_schema_refuses(tag):
    shape = checks.fast_shapes()[tag]
    agreed = refused = 0
    base = dict(BASE, kind="Job") if tag == "Deleted" else dict(BASE)
    for name, value in itertools.product(sorted(shape.attrs), TRICKY):
        node = etree.Element(tag, {**base, name: value})
        fast, reference = _check(node)
        agreed += fast == reference
        refused += not reference
    assert refused > 0  # the corpus really holds invalid elements
    # Required attributes missing, unknown attributes, namespaced ones, text, children.
    for missing in ("guid", "vv", "modified", "origin"):
        _check(etree.Element(tag, {k: v for k, v in base.items() if k != missing}))
    _check(etree.Element(tag, {**base, "colour": "red"}))
    _check(etree.Element(tag, {**base, "{urn:x}y": "1"}))
    with_text = etree.Element(tag, base)
    with_text.text = "text"
    _check(with_text)
    with_space = etree.Element(tag, base)
    with_space.text = "  "
    _check(with_space)
    for children in (["Note"], ["Note", "Note"], ["Extra"], ["Note", "Extra"]):
        node = etree.Element(tag, base)
        for child in children:
            etree.SubElement(node, child).text = "x"
        _check(node)
    noted = etree.Element(tag, base)
    note = etree.SubElement(noted, "Note", a="1")
    _check(noted)
    note.attrib.clear()
    etree.SubElement(note, "Inner")
    _check(noted)
    tailed = etree.Element(tag, base)
    etree.SubElement(tailed, "Note").tail = "x"
    _check(tailed)


def test_random_guids_and_vectors_agree():
    for n in range(200):
        guid = str(uuid.UUID(int=n * 7919 + 1))
        node = etree.Element("User", dict(BASE, guid=guid, vv=f"R:{n + 1} S%20x:{n + 2}"))
        assert _check(node) == (True, True)


def test_invalid_documents_still_get_the_schema_message():
    data = (
        b"<?xml version='1.0' encoding='UTF-8'?>\n"
        b'<JobExchange version="1" repository="R" generation="2" sinceGen="1" '
        b'exportTime="3">\n'
        + f'<Job guid="{G}" vv="R:1" modified="5" origin="R" priority="high"/>\n'.encode()
        + b"</JobExchange>"
    )
    with pytest.raises(exchange.ExchangeFormatError) as info:
        exchange.validate_file(io.BytesIO(data))
    assert "priority" in str(info.value) and "high" in str(info.value)
    assert info.value.line == 3 and info.value.element == "Job"


def test_a_value_written_again_is_written_and_vouched_for_as_the_first_time():
    """The writer remembers each (field, value) attribute it wrote, with the checks'
    verdict: a warm cache gives the same text and the same verdict as a cold one, and
    the verdict never vouches for what the schema refuses."""
    from wmsync.exchange import writer

    elements = [
        Element(kind, G, {"R": 1}, 5, "R", {name: value}, local_id=7)
        for kind in KINDS
        for name in FIELDS[kind]
        if name != "notes"
        for value in TRICKY
    ]
    writer._ATTRIBUTES.clear()
    cold = []
    for element in elements:
        cold.append(writer._element_text(element, False))
        writer._ATTRIBUTES.clear()
    warm = [writer._element_text(element, False) for element in elements]
    warm_again = [writer._element_text(element, False) for element in elements]
    assert warm == cold and warm_again == cold
    for text, certain in cold:
        if certain:
            node = etree.fromstring(text.encode(), exchange.new_parser())
            assert _schema().validate(node), text


def test_the_writer_keeps_only_short_values_and_a_bounded_number(monkeypatch):
    from wmsync.exchange import writer

    monkeypatch.setattr(writer, "_ATTRIBUTES_KEPT", 5)
    writer._ATTRIBUTES.clear()
    long_text = "x" * 10_000  # descriptions can hold a million characters
    writer._element_text(Element("Job", G, {"R": 1}, 5, "R", {"description": long_text}), False)
    assert writer._ATTRIBUTES.get("Job", {}) == {}
    for n in range(20):
        writer._element_text(Element("Job", G, {"R": 1}, 5, "R", {"name": f"job {n}"}), False)
    assert len(writer._ATTRIBUTES["Job"]) == 5
    writer._ATTRIBUTES.clear()
