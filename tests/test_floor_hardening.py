"""The lxml trap, on whatever lxml is installed (the floor run uses lxml 4.9).

lxml 4.x resolves external entities unless told not to, and ``iterparse`` does until 6.1
(docs/design.md §9). An exchange document with an external entity or an entity bomb
must be refused on every version, and every parser the code creates must have entity
resolution, DTD loading and network access off: checked here by recording the keywords
the code passes and by feeding parsers built with exactly those keywords a hostile
document (a local file and a loopback URL it must not fetch).
"""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import time

import pytest
from lxml import etree

from wmsync.errors import ExchangeFormatError
from wmsync.exchange import ExchangeHeader, read_document, schema, source, write_document
from wmsync.model import Element

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

SECRET = "TOP-SECRET-6d1f"
ROOT_TAG = '<JobExchange version="1" repository="R" generation="1" sinceGen="0" exportTime="0">'


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def web():
    """A loopback HTTP server that counts the requests a parser makes to it."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = f'<!ENTITY remote "{SECRET}">'.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def hostile(secret_file, base_url):
    """An exchange document whose DOCTYPE pulls a file, a URL and an external subset.

    The entities are used in element content (a job's note): external entities in
    attribute values are a well-formedness error whatever the settings.
    """
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE JobExchange SYSTEM "{base_url}/subset.dtd" [\n'
        f'  <!ENTITY file SYSTEM "file://{secret_file}">\n'
        f'  <!ENTITY net SYSTEM "{base_url}/entity">\n'
        f'  <!ENTITY % param SYSTEM "{base_url}/param"> %param;\n'
        f"]>\n"
        f"{ROOT_TAG}\n"
        f'<Job guid="00000000-0000-4000-8000-000000000001" vv="R:1" modified="1" '
        f'origin="R" name="n"><Note>&file;&net;</Note></Job>\n'
        f"</JobExchange>\n"
    ).encode()


def bombs():
    laughs = ["<!DOCTYPE JobExchange [", '<!ENTITY l0 "lol">']
    laughs += [f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10)]
    big = "x" * 50_000
    quadratic = [f'<!DOCTYPE JobExchange [<!ENTITY big "{big}">']
    return {
        "billion-laughs": "\n".join(laughs) + "]>\n" + ROOT_TAG.replace('"R"', '"&l9;"'),
        "quadratic": "".join(quadratic)
        + "]>\n"
        + ROOT_TAG.replace('"R"', '"' + "&big;" * 2000 + '"'),
    }


def read_all(data):
    with read_document(io.BytesIO(data)) as reader:
        return reader.header, list(reader)


def refused(data):
    with pytest.raises(ExchangeFormatError) as info:
        read_all(data)
    return str(info.value)


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("wrap", ["plain", "bom", "after-comment", "gzip"])
def test_external_entity_document_refused(secret_file, web, wrap):
    base, hits = web
    data = hostile(secret_file, base)
    if wrap == "bom":
        data = b"\xef\xbb\xbf" + data
    elif wrap == "after-comment":
        data = data.replace(b"?>\n", b"?>\n<!-- exported -->\n", 1)
    elif wrap == "gzip":
        data = gzip.compress(data)
    message = refused(data)
    assert "DOCTYPE not allowed" in message
    assert SECRET not in message
    assert hits == []


@pytest.mark.parametrize("name", ["billion-laughs", "quadratic"])
def test_entity_bomb_refused_quickly(name):
    data = bombs()[name].encode() + b"</JobExchange>"
    started = time.perf_counter()
    assert "DOCTYPE not allowed" in refused(data)
    assert time.perf_counter() - started < 1


def test_past_the_prolog_check_the_parser_resolves_and_fetches_nothing(
    secret_file, web, monkeypatch
):
    """Defence in depth: with the DOCTYPE check switched off, the reader's own iterparse
    settings still load no file, no URL, no parameter entity and no external subset.

    (Not entity bombs: libxml2 2.9 (lxml 4.9) expands internal entities in attribute
    values whatever ``resolve_entities`` says, 100 MB for the quadratic bomb above. Only
    the DOCTYPE refusal stops those on every version, which is why it comes first.)
    """
    base, hits = web
    monkeypatch.setattr(source, "_scan_prolog", lambda stream: b"")
    data = hostile(secret_file, base)
    for variant in (data, data.replace(b" %param;", b"")):
        try:
            header, elements = read_all(variant)
        except ExchangeFormatError as exc:
            assert SECRET not in str(exc)
        else:
            assert SECRET not in repr(header) + repr(elements)
            assert [e.fields.get("notes", "") for e in elements] == [""]
    assert hits == []


# --------------------------------------------------------------------------- parser objects


@pytest.fixture
def recorded(monkeypatch):
    """Record every XMLParser / iterparse the exchange package creates (keywords and all)."""
    calls = []
    real_parser, real_iterparse = etree.XMLParser, etree.iterparse

    def parser_spy(*args, **kwargs):
        calls.append(("XMLParser", args, kwargs))
        return real_parser(*args, **kwargs)

    def iterparse_spy(source, *args, **kwargs):
        calls.append(("iterparse", args, kwargs))
        return real_iterparse(source, *args, **kwargs)

    # lxml.etree itself: every module of the package calls etree.XMLParser/iterparse.
    monkeypatch.setattr(etree, "XMLParser", parser_spy)
    monkeypatch.setattr(etree, "iterparse", iterparse_spy)
    monkeypatch.setattr(schema, "_schemas", threading.local())  # schema parsed anew
    return calls


def _a_document():
    out = io.BytesIO()
    element = Element(
        "User",
        "00000000-0000-4000-8000-000000000001",
        {"R": 1},
        1,
        "R",
        {"userName": "a", "fullName": "A"},
    )
    write_document(out, ExchangeHeader("R", 1, 0, 0), [element])
    return out.getvalue()


def test_every_parser_the_reader_creates_has_entities_off(recorded, secret_file, web):
    base, hits = web
    data = _a_document()
    header, elements = read_all(data)
    assert header.repository == "R" and len(elements) == 1
    kinds = [kind for kind, _, _ in recorded]
    assert "XMLParser" in kinds and "iterparse" in kinds
    for kind, args, kwargs in recorded:
        assert not args, f"{kind}: safety options must be keywords"
        assert kwargs.get("resolve_entities") is False, kind  # never 'internal' (lxml 4.x)
        assert kwargs.get("no_network") is True, kind
        assert kwargs.get("load_dtd") is False, kind
        assert kwargs.get("huge_tree", False) is False, kind
        assert kwargs.get("dtd_validation", False) is False, kind

    # Parsers built with exactly those keywords, on this lxml, resolve and fetch nothing.
    doc = hostile(secret_file, base).replace(b" %param;", b"")
    for kind, _, kwargs in list(recorded):  # (the spies are still in place)
        if kind == "XMLParser":
            root = etree.fromstring(doc, etree.XMLParser(**kwargs))
        else:
            root = list(etree.iterparse(io.BytesIO(doc), **kwargs))[-1][1]
        note = root[0][0]
        assert note.tag == "Note"
        assert SECRET not in etree.tostring(root).decode(), kind
        # The references stay references: nothing was read in their place.
        assert not note.text, kind
        assert [type(child) for child in note] == [etree._Entity] * 2, kind
        assert [child.text for child in note] == ["&file;", "&net;"], kind
    assert hits == []


def test_every_parser_the_repository_import_creates_has_entities_off(recorded, tmp_path):
    """The repository's quick reader (a parser target) comes from the same factory."""
    from wmsync.repository.store import Store

    path = tmp_path / "doc.jxl"
    path.write_bytes(_a_document())
    store = Store(tmp_path / "r.sqlite", "Target")
    recorded.clear()
    assert store.import_file(path).added == 1
    targets = [
        kwargs
        for kind, _, kwargs in recorded
        if kind == "XMLParser" and kwargs.get("target") is not None
    ]
    assert targets, "the quick reader made no parser target"
    for kind, args, kwargs in recorded:
        assert not args, kind
        assert (
            kwargs.get("resolve_entities"),
            kwargs.get("no_network"),
            kwargs.get("load_dtd"),
            kwargs.get("huge_tree"),
        ) == (False, True, False, False)


def test_the_trap_is_real_on_this_lxml(secret_file):
    """The control: asked to resolve entities, lxml reads the file (so the checks above
    are not passing merely because the document is inert)."""
    doc = (f'<!DOCTYPE r [<!ENTITY file SYSTEM "file://{secret_file}">]><r>&file;</r>').encode()
    resolving = etree.XMLParser(resolve_entities=True, no_network=True)
    assert etree.fromstring(doc, resolving).text == SECRET
    safe = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    assert SECRET not in etree.tostring(etree.fromstring(doc, safe)).decode()
