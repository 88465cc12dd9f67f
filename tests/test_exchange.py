"""The job exchange document: round trips, streaming, validation and hardening."""

from __future__ import annotations

import gc
import gzip
import io
import os
import threading
import time
import uuid
import weakref

import pytest
from lxml import etree

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.exchange import (
    DEFAULT_MAX_BYTES,
    ExchangeHeader,
    gzip_file,
    read_document,
    source,
    validate_file,
    write_document,
)
from wmsync.model import FIELDS, KINDS, Element

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

HEADER = ExchangeHeader(
    repository="Ohio Repo", generation=812, since_gen=790, export_time=1754041845000
)
G1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
G2 = "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
G3 = "16fd2706-8baf-433b-82eb-8c7fada847da"
ROOT = '<JobExchange version="1" repository="R" generation="2" sinceGen="1" exportTime="3">'
V = f'guid="{G1}" vv="R:1" modified="5" origin="R"'


def sample_elements():
    """One element of every kind (every field set), plus the awkward cases."""
    elements = []
    for n, kind in enumerate(KINDS):
        fields = {}
        for name in FIELDS[kind]:
            if name in ("jobType", "parentJob", "job"):
                fields[name] = G2
            elif (
                name
                in (
                    "priority",
                    "stage",
                    "status",
                    "percentageComplete",
                    "assignedType",
                    "type",
                    "defaultPriority",
                    "defaultAssignedType",
                )
                or name.endswith("Date")
                or name in ("created", "date")
            ):
                fields[name] = str(1754041845000 + n) if "ate" in name else "3"
            else:
                fields[name] = f"{kind} {name} \u00e9\u4e2d <&> \"'\n\ttab"
        elements.append(
            Element(
                kind,
                str(uuid.uuid4()),
                {"Parent": 2, "Ohio Repo": 1},
                1754041845000 + n,
                "Ohio Repo",
                fields,
                local_id=n + 1,
            )
        )
    elements += [
        # notes with newlines, CR, unicode and markup; empty strings vs absent fields
        Element(
            "Job",
            G1,
            {"Name with spaces": 3, "a:b:c": 1, "Zürich": 9},
            1,
            "a:b:c",
            {"name": "", "description": "", "notes": "line 1\r\nline 2\n<&>]]> \u2603"},
        ),
        Element("Job", G2, {"P": 1}, 2, "P", {"name": "x", "notes": ""}),
        Element("Job", G3, {"P": 1}, 3, "P", {"priority": "-4"}),
        Element("User", G3, {"P": 1}, 4, "P", {}),
        # tombstones, with and without a local id
        Element("Job", G1, {"P": 7}, 5, "P", {}, deleted=True, local_id=101),
        Element("Activity", G2, {"P": 7, "Q": 1}, 6, "Q", {}, deleted=True),
    ]
    return elements


def write_bytes(elements, header=HEADER):
    out = io.BytesIO()
    count = write_document(out, header, elements)
    return out.getvalue(), count


def doc(*children, root=ROOT):
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        + root
        + "\n"
        + "\n".join(children)
        + "\n</JobExchange>\n"
    ).encode()


def read_all(data, **kw):
    with read_document(io.BytesIO(data), **kw) as reader:
        return reader.header, list(reader)


def refused(data, **kw):
    with pytest.raises(ExchangeFormatError) as info:
        read_all(data, **kw)
    return info.value


# ------------------------------------------------------------------------ round trips


def test_round_trip_every_kind_as_bytes_and_file(tmp_path):
    elements = sample_elements()
    data, count = write_bytes(elements)
    assert count == len(elements)
    header, back = read_all(data)
    assert header == HEADER
    assert back == elements
    path = tmp_path / "x.jxl"
    assert write_document(str(path), HEADER, iter(elements)) == len(elements)
    assert path.read_bytes() == data
    assert validate_file(str(path)) == (HEADER, len(elements))
    assert validate_file(path) == (HEADER, len(elements))  # PathLike too


def test_empty_vs_absent_and_notes():
    data, _ = write_bytes(sample_elements())
    back = read_all(data)[1]
    empty, note_empty, absent = back[len(KINDS)], back[len(KINDS) + 1], back[len(KINDS) + 2]
    assert empty.fields["name"] == "" and empty.fields["notes"].startswith("line 1\r\n")
    assert note_empty.fields == {"name": "x", "notes": ""}
    assert absent.fields == {"priority": "-4"}  # no notes key: null
    assert b"<Note/>" in data or b"<Note></Note>" in data


def test_tombstones_and_local_ids():
    back = read_all(write_bytes(sample_elements())[0])[1]
    tomb, tomb2 = back[-2], back[-1]
    assert tomb.deleted and tomb.kind == "Job" and tomb.fields == {} and tomb.local_id == 101
    assert tomb2.deleted and tomb2.kind == "Activity" and tomb2.local_id is None
    assert tomb2.vv == {"P": 7, "Q": 1}
    assert [e.local_id for e in back[: len(KINDS)]] == list(range(1, len(KINDS) + 1))


def test_writer_layout_and_empty_document():
    data, count = write_bytes([])
    assert count == 0
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<JobExchange ")
    assert read_all(data) == (HEADER, [])
    data, _ = write_bytes(sample_elements()[:3])
    assert data.count(b"\n") >= 4  # one element per line: errors name useful lines


def test_writer_refuses_what_it_cannot_write(tmp_path):
    bad_kind = Element("Nope", G1, {"P": 1}, 1, "P")
    with pytest.raises(ExchangeFormatError, match="unknown kind"):
        write_bytes([bad_kind])
    with pytest.raises(ExchangeFormatError, match="unknown field"):
        write_bytes([Element("User", G1, {"P": 1}, 1, "P", {"bogus": "1"})])
    # Content XML cannot hold travels escaped (tests/test_exchange_escaping.py); a
    # version attribute (here the origin) cannot.
    control = Element("User", G1, {"P": 1}, 1, "P\x01", {"fullName": "a"})
    path = tmp_path / "partial.jxl"
    with pytest.raises(ExchangeFormatError) as info:
        write_document(str(path), HEADER, [control])
    assert info.value.element == "User"
    assert not path.exists()  # the partial file is removed


def test_schema_matches_model_fields():
    """jxl.xsd declares exactly model.FIELDS (notes as <Note>) plus the version set."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    tree = etree.parse(exchange.SCHEMA_PATH)
    types = {t.get("name"): t for t in tree.getroot().iter(xs + "complexType")}
    common = {"guid", "id", "vv", "modified", "origin", "escaped"}
    for kind in KINDS:
        declared = {a.get("name") for a in types[kind + "Element"].iter(xs + "attribute")}
        assert declared == set(FIELDS[kind]) - {"notes"}, kind
        groups = [g.get("ref") for g in types[kind + "Element"].iter(xs + "attributeGroup")]
        assert groups == ["Version"]
    version = next(g for g in tree.getroot().iter(xs + "attributeGroup") if g.get("name"))
    assert {a.get("name") for a in version.iter(xs + "attribute")} == common


def test_shipped_schema_validates_whole_documents():
    schema = etree.XMLSchema(etree.parse(exchange.SCHEMA_PATH))
    data, _ = write_bytes(sample_elements())
    assert schema.validate(etree.fromstring(data))
    assert not schema.validate(etree.fromstring(f"<Job {V}/>".encode()))  # not a root


# ------------------------------------------------------------------------ streaming


def job(n):
    return Element(
        "Job",
        str(uuid.UUID(int=n + 1)),
        {"Parent": 1, "Ohio": n % 7 + 1},
        n,
        "Ohio",
        {"name": f"Job {n}", "priority": "2", "notes": "n" * 20},
        local_id=n + 1,
    )


def test_streaming_reader_keeps_memory_flat(tmp_path):
    total = 20_000
    path = str(tmp_path / "big.jxl")
    assert write_document(path, HEADER, (job(n) for n in range(total))) == total
    samples = []
    most_children = 0
    with read_document(path) as reader:
        assert reader.header == HEADER
        for n, element in enumerate(reader):
            if n % 997 == 0:
                assert element == job(n)
                samples.append(weakref.ref(element))
                most_children = max(most_children, len(reader._root))
        assert reader.count == total
        # elements handed out are dropped from the parser's tree: at most about one parse
        # chunk of them is alive at any time, not the 20,000 of a whole tree
        assert most_children < 500
        # and the reader keeps no reference to the Elements it handed out
        del element
        gc.collect()
        assert sum(ref() is not None for ref in samples) == 0


def test_reader_closes_the_file_it_opened(tmp_path):
    path = tmp_path / "x.jxl"
    write_document(str(path), HEADER, sample_elements())
    reader = read_document(str(path))
    raw = reader._closers[0]
    list(reader)
    assert raw.closed
    reader = read_document(str(path))
    raw = reader._closers[0]
    reader.close()
    assert raw.closed
    with pytest.raises(StopIteration):
        next(reader)
    path.write_bytes(doc(f"<Job {V} bogus='1'/>"))
    with pytest.raises(ExchangeFormatError):
        reader = read_document(str(path))
        raw = reader._closers[0]
        list(reader)
    assert raw.closed


def test_caller_file_stays_open():
    stream = io.BytesIO(write_bytes(sample_elements())[0])
    with read_document(stream) as reader:
        list(reader)
    assert not stream.closed


def test_gzip_round_trip(tmp_path):
    plain = tmp_path / "x.jxl"
    packed = tmp_path / "x.jxl.gz"
    write_document(str(plain), HEADER, (job(n) for n in range(500)))
    written = gzip_file(str(plain), str(packed))
    assert written == packed.stat().st_size < plain.stat().st_size
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert validate_file(str(packed)) == (HEADER, 500)
    with open(packed, "rb") as stream:
        assert read_document(stream).header == HEADER
        stream.seek(0)
        assert list(read_document(stream))[7] == job(7)
    other = tmp_path / "y.gz"
    gzip_file(str(plain), str(other))
    assert other.read_bytes() == packed.read_bytes()  # deterministic


# ------------------------------------------------------------------------ invalid input


def test_header_and_utf8_bom():
    header, elements = read_all(b"\xef\xbb\xbf" + doc())
    assert header == ExchangeHeader("R", 2, 1, 3, "1") and elements == []
    header, _ = read_all(b"<!-- exported --><?pi x?>\n" + doc()[39:])
    assert header.repository == "R"


@pytest.mark.parametrize(
    ("data", "text", "line", "element"),
    [
        (b"this is not xml", "not an XML document", 1, None),
        (b'{"error": {"code": 500}}', "not an XML document", 1, None),
        (b"", "no root element", 1, None),
        (b"<?xml version='1.0'?>\n\n   ", "no root element", 3, None),
        (doc(f"<Job {V}>")[:-30], "", 3, "JobExchange"),  # inside <Job ...: not started
        (doc(f"<Job {V}/>", f"<User {V}/>")[:-17], "", 4, "JobExchange"),
        (doc(f"<Job {V}/>").replace(b"</JobExchange>", b""), "", None, "JobExchange"),
        (b"<Jobs/>", "root element is <Jobs>", 1, "Jobs"),
        (b'<JobExchange xmlns="urn:x"/>', "root element", 1, "{urn:x}JobExchange"),
        (doc(root=ROOT.replace('version="1"', 'version="2"')), "version '2'", 2, "JobExchange"),
        (doc(root=ROOT.replace(' generation="2"', "")), "generation", 2, "JobExchange"),
        (doc(root=ROOT.replace('"3"', '"soon"')), "exportTime", 2, "JobExchange"),
        (doc(f"<User {V}/>", f"<Job {V} colour='red'/>"), "colour", 4, "Job"),
        (doc(f"<User {V}/>", f"<Job {V}>\n<Extra/></Job>"), "Extra", 5, "Extra"),
        (doc(f"<User {V}/>", "<Bogus/>"), "unexpected element <Bogus>", 4, "Bogus"),
        (doc(f"<User {V}>text</User>"), "", 3, "User"),
        (doc(f"<Job {V}><Note>a</Note><Note>b</Note></Job>"), "Note", 3, "Note"),
        (doc("hello", f"<User {V}/>"), "text not allowed", 2, "JobExchange"),
        (doc(f"<User {V.replace(G1, G1[:-1])}/>"), "guid", 3, "User"),
        (doc(f"<User {V.replace(G1, 'not-a-guid')}/>"), "guid", 3, "User"),
        (doc(f'<Job {V} jobType=""/>'), "jobType", 3, "Job"),
        (doc(f'<Job {V} priority="high"/>'), "priority", 3, "Job"),
        (doc(f'<Job {V} priority=""/>'), "priority", 3, "Job"),
        (doc(f'<Job {V} id="0"/>'), "id", 3, "Job"),
        (doc(f"<User {V.replace('R:1', 'R')}/>"), "vv", 3, "User"),
        (doc(f"<User {V.replace('R:1', 'R:1  S:2')}/>"), "vv", 3, "User"),
        (doc(f"<User {V.replace('R:1', 'R:0')}/>"), "invalid vv 'R:0'", 3, "User"),
        (doc(f"<User {V.replace('R:1', 'R:1 R:x')}/>"), "vv", 3, "User"),
        (doc("<User " + V.replace(' origin="R"', "") + "/>"), "origin", 3, "User"),
        (doc("<User " + V.replace(' modified="5"', "") + "/>"), "modified", 3, "User"),
        (doc(f"<Deleted {V}/>"), "kind", 3, "Deleted"),
        (doc(f"<Deleted kind='Note' {V}/>"), "kind", 3, "Deleted"),
        (doc(f"<Deleted kind='Job' {V} name='x'/>"), "name", 3, "Deleted"),
        (doc(f"<User {V} x:y='1' xmlns:x='urn:x'/>"), "", 3, "User"),
        (doc(f"<User {V}/>") + b"<User/>", "", None, None),
    ],
)
def test_invalid_documents_name_line_and_element(data, text, line, element):
    error = refused(data)
    assert text in str(error)
    if line is not None:
        assert error.line == line, str(error)
    if element is not None:
        assert error.element == element, str(error)
    assert isinstance(error, ValueError)


def test_errors_are_reported_at_once_not_at_the_end():
    """A bad element is refused before the elements after it are handed out."""
    good = [
        f'<User guid="{uuid.UUID(int=n)}" vv="R:1" modified="1" origin="R"/>'
        for n in range(1, 3000)
    ]
    data = doc(*good[:10], f"<User {V} bad='1'/>", *good[10:])
    reader = read_document(io.BytesIO(data))
    seen = []
    with pytest.raises(ExchangeFormatError) as info:
        for element in reader:
            seen.append(element)
    assert len(seen) == 10
    assert info.value.line == 13


def test_doctype_refused():
    for prolog in (
        b"<!DOCTYPE JobExchange>",
        b'<!DOCTYPE JobExchange SYSTEM "jxl.dtd">',
        b"<!-- c -->\n<!doctype x>",
        b"<![CDATA[x]]>",
    ):
        error = refused(b"<?xml version='1.0'?>\n" + prolog + b"\n" + doc()[39:])
        assert "DOCTYPE not allowed" in str(error)
        assert error.line == prolog.count(b"\n") + 2


def test_other_encodings_refused():
    data = doc().replace(b"encoding='UTF-8'", b"encoding='UTF-16'")
    assert "UTF-8" in str(refused(data))
    assert "not an XML document" in str(refused(doc().decode().encode("utf-16")))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_external_entity_refused_without_opening_the_file(tmp_path):
    """The entity names a FIFO: a parser that opened it would block until it had a writer."""
    secret = tmp_path / "secret"
    os.mkfifo(secret)
    data = (
        f'<?xml version="1.0"?>\n<!DOCTYPE JobExchange [\n'
        f'  <!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + ROOT.replace('repository="R"', 'repository="&xxe;"')
        + "</JobExchange>"
    ).encode()
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_try(data)), daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the parser before failing
        with open(secret, "wb"):
            pass
        worker.join(5)
        pytest.fail("the reader opened the entity's file")
    assert "DOCTYPE not allowed" in outcome[0]


def _try(data):
    try:
        read_all(data)
    except ExchangeFormatError as exc:
        return str(exc)
    return "accepted"


def test_entities_stay_unresolved_even_past_the_prolog_check(tmp_path, monkeypatch):
    """Defence in depth: with the DOCTYPE check switched off, the reader's own parser
    settings still resolve nothing (lxml 4.x would by default)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    monkeypatch.setattr(source, "_scan_prolog", lambda stream: b"")
    data = (
        f'<!DOCTYPE JobExchange [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        + ROOT
        + f"\n<Job {V}><Note>&xxe;</Note></Job>"
        "\n</JobExchange>"
    ).encode()
    try:
        elements = read_all(data)[1]
    except ExchangeFormatError as exc:
        assert "TOP-SECRET" not in str(exc)
    else:
        assert all("TOP-SECRET" not in repr(e) for e in elements)


def test_billion_laughs_refused_quickly():
    lines = ['<?xml version="1.0"?>', "<!DOCTYPE lolz [", ' <!ENTITY lol0 "lol">']
    lines += [f' <!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">' for i in range(1, 10)]
    lines += ["]>", ROOT.replace('repository="R"', 'repository="&lol9;"') + "</JobExchange>"]
    started = time.perf_counter()
    assert "DOCTYPE not allowed" in str(refused("\n".join(lines).encode()))
    assert time.perf_counter() - started < 1


def test_oversize_refused():
    data = doc(*[f"<User {V}/>"] * 200)
    assert read_all(data, max_bytes=len(data))[1]  # exactly at the limit is fine
    error = refused(data, max_bytes=len(data) - 1)
    assert "larger than the limit" in str(error)
    assert "limit of 100 bytes" in str(
        refused(b"<!--" + b" " * 500 + b"-->" + doc(), max_bytes=100)
    )
    assert DEFAULT_MAX_BYTES == 2 * 1024**3


def test_gzip_bomb_refused_by_decompressed_size():
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as out:
        out.write(doc()[:-16])  # open root
        chunk = b" " * (1024 * 1024)
        for _ in range(64):  # 64 MiB of white space, about 64 KiB compressed
            out.write(chunk)
        out.write(b"</JobExchange>")
    assert packed.tell() < 200_000
    started = time.perf_counter()
    reader = read_document(io.BytesIO(packed.getvalue()), max_bytes=1024 * 1024)
    with pytest.raises(ExchangeFormatError, match="larger than the limit"):
        list(reader)
    assert time.perf_counter() - started < 2


def test_corrupt_gzip_refused():
    packed = gzip.compress(doc(f"<User {V}/>"))
    assert "gzip" in str(refused(packed[:-12]))
    assert "gzip" in str(refused(packed[:10] + b"\xff" * 20 + packed[30:]))


def test_prolog_limit():
    error = refused(b"<!--" + b"x" * (exchange.MAX_PROLOG_BYTES + 10) + b"-->" + doc())
    assert "before the root element" in str(error)
