"""Bad input is refused with a clear message and changes nothing on any repository.

"Nothing" is checked on every repository of the cluster: the generation, the
fingerprint of every element (content and version vector), the conflict log and the
replication node rows are the same before and after.
"""

from __future__ import annotations

import gzip
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from cluster import create_job, make_cluster
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from wmsync import exchange, synchronize
from wmsync.emulator.server import start_in_thread
from wmsync.errors import BadRequest, ValueTableError
from wmsync.model import Element, new_guid
from wmsync.repository.store import Store
from wmsync.valuetable import parse_children

USER = "tester"


def _cluster(start):
    cluster = make_cluster(start, "Parent", "Ohio", "AZ", max_document_bytes=64 * 1024)
    synchronize(cluster.parent.url, "Parent", cluster.table(), user=USER)  # registered
    for name in cluster.names:
        create_job(cluster.client(name), f"pending on {name}")  # something a run would move
    return cluster


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """One cluster for the tests that must change nothing (each checks it did not)."""
    base = tmp_path_factory.mktemp("input")
    with ExitStack() as stack:

        def start(name, **options):
            running = start_in_thread(name, base / f"{name}.sqlite", **options)
            stack.callback(running.stop)
            return running

        cluster = _cluster(start)
        stack.callback(cluster.close)
        yield cluster


@pytest.fixture
def fresh(emulator):
    """A cluster of its own, for the tests that do change something."""
    cluster = _cluster(emulator)
    yield cluster
    cluster.close()


def state(cluster):
    servers = [cluster.parent, *cluster.children]
    return [
        (s.store.generation(), s.store.fingerprint(), s.store.conflicts(), s.store.nodes())
        for s in servers
    ]


def sync(cluster, table=None, name="Parent", url=None):
    return synchronize(
        url or cluster.parent.url, name, cluster.table() if table is None else table, user=USER
    )


# -- the child value table -------------------------------------------------------------


def rows_of(cluster):
    return [[cluster.name_of(c), "true", c.url, "2024-01-01 10:00"] for c in cluster.children]


# Every column wrong in turn, plus the table's own shape.
BAD_ROWS = {
    "empty name": lambda r: [["", *r[0][1:]], r[1]],
    "duplicate name": lambda r: [r[0], [r[0][0], *r[1][1:]]],
    "URL not http(s)": lambda r: [[r[0][0], "true", "ftp://host/x/WMServer", r[0][3]], r[1]],
    "URL not a URL": lambda r: [[r[0][0], "true", "not a url", r[0][3]], r[1]],
    "unreadable date": lambda r: [[*r[0][:3], "31/31/2024 25:61"], r[1]],
    "date that is words": lambda r: [[*r[0][:3], "yesterday"], r[1]],
    "too few columns": lambda r: [r[0][:2], r[1]],
    "too many columns": lambda r: [[*r[0], "extra", "columns"], r[1]],
    "empty table": lambda r: [],
}


@pytest.mark.parametrize("problem", list(BAD_ROWS))
def test_a_bad_child_table_refuses_the_whole_run_and_changes_nothing(three, problem):
    before = state(three)
    result = sync(three, BAD_ROWS[problem](rows_of(three)))
    assert result.status == -1
    assert "refused" in result.error or "no connected" in result.error
    if problem not in ("empty table",):
        assert "row" in result.error.lower(), result.error  # names the row
    assert state(three) == before


def test_a_connected_flag_other_than_true_skips_that_child_only(fresh):
    rows = rows_of(fresh)
    rows[0][1] = "maybe"
    result = sync(fresh, rows)
    assert [c.state for c in result.children] == ["skipped", "synchronized"]
    assert "maybe" in result.children[0].error


def test_a_thousand_rows_parse_fast_and_one_bad_row_among_them_refuses_everything(three):
    rows = [
        [
            f"Child{i}",
            "true",
            f"http://127.0.0.1:9/arcgis/rest/services/Child{i}/WMServer",
            "2024-01-01 10:00",
        ]
        for i in range(1000)
    ]
    started = time.monotonic()
    assert len(parse_children(rows)) == 1000
    text = ";".join(" ".join(row) for row in rows)
    assert len(parse_children(text)) == 1000
    assert time.monotonic() - started < 2.0
    rows[777][2] = "not a url"
    with pytest.raises(ValueTableError) as refused:
        parse_children(rows)
    assert "778" in str(refused.value)  # rows are numbered from 1
    before = state(three)
    started = time.monotonic()
    result = sync(three, rows_of(three) + rows)
    assert result.status == -1 and "780" in result.error  # two real rows come first
    assert time.monotonic() - started < 2.0  # refused before any request
    assert state(three) == before


# -- the parent ----------------------------------------------------------------------


def test_a_wrong_parent_name_changes_nothing(three):
    before = state(three)
    result = sync(three, name="Headquarters")
    assert result.status == -1
    assert "'Parent', not 'Headquarters'" in result.error
    assert state(three) == before


def test_a_child_row_naming_another_repository_fails_that_child_and_changes_nothing(three):
    before = state(three)
    ohio = three.children[0]
    table = f"Texas true {ohio.url} ''"  # Ohio's server under another name
    result = sync(three, table)
    assert result.status == 1
    assert "repository 'Ohio', not 'Texas'" in result.children[0].error
    assert state(three) == before
    assert all(node.name != "Texas" for node in three.parent.store.nodes())


@pytest.fixture
def html_site():
    """A web server that is not a WMServer: an HTML page for every path."""

    def app(environ, start_response):
        page = Response("<html><body><h1>Welcome to IIS</h1></body></html>", mimetype="text/html")
        return page(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/arcgis/rest/services/Parent/WMServer"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def test_a_parent_url_that_is_an_html_site_is_refused_clearly(three, html_site):
    before = state(three)
    result = sync(three, url=html_site)
    assert result.status == -1
    assert "answered HTML, not JSON: is this a WMServer URL?" in result.error
    assert "127.0.0.1" in result.error
    assert state(three) == before


def test_a_parent_url_naming_no_service_is_refused_clearly(three):
    before = state(three)
    wrong = three.parent.url.replace("/Parent/", "/Nowhere/")
    result = sync(three, url=wrong)
    assert result.status == -1
    assert "404" in result.error and "Nowhere" in result.error
    assert state(three) == before


def test_a_child_url_that_is_an_html_site_fails_that_child_only(fresh, html_site):
    before = state(fresh)[1]
    az = fresh.children[1]
    result = sync(fresh, f"Ohio true {html_site} '';AZ true {az.url} ''")
    assert result.status == 1
    assert "is this a WMServer URL?" in result.children[0].error
    assert result.children[1].state == "synchronized"
    assert state(fresh)[1] == before  # Ohio itself untouched


# -- exchange documents posted to replication/import ----------------------------------------


@pytest.fixture
def documents(tmp_path):
    """A valid exchange document from a scratch repository, and a way to write others."""
    source = Store(tmp_path / "source.sqlite", "Ohio")
    source.bulk_insert_jobs(20, name_prefix="Imported")
    valid = source.export(tmp_path / "exports").path

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return valid, write


def _header(text: str) -> str:
    return text.split("?>", 1)[1] if text.startswith("<?xml") else text


def bad_documents(valid: Path):
    text = valid.read_text(encoding="utf-8")
    body = _header(text)
    root_end = body.index(">") + 1
    head, rest = body[:root_end], body[root_end:]
    good_guid = new_guid()
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE JobExchange [<!ENTITY x SYSTEM '
        '"file:///etc/passwd">]>' + head + "&x;" + rest
    )
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE JobExchange [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + "]>"
        + head.replace('repository="Ohio"', 'repository="&i;"')
        + rest
    )
    last_job = text.rindex("<Job ")
    bad_vv = text[:last_job] + text[last_job:].replace('vv="', 'vv="Ohio:x ', 1)
    return {
        "not XML": b"this is not XML at all\n",
        "JSON": b'{"jobs": []}',
        "empty": b"",
        "another root": b"<?xml version='1.0'?><Jobs><Job guid='x'/></Jobs>",
        "wrong version": text.replace('version="1"', 'version="9"', 1).encode(),
        "unknown element": text.replace(
            "</JobExchange>", f'<Parcel guid="{good_guid}"/></JobExchange>'
        ).encode(),
        "truncated": text.encode()[: len(text.encode()) * 2 // 3],
        "bad vv on the last job": bad_vv.encode(),
        "external entity (XXE)": xxe.encode(),
        "entity bomb": bomb.encode(),
        "oversize": (
            text.replace("</JobExchange>", "<!--" + "x" * (70 * 1024) + "--></JobExchange>")
        ).encode(),
        "gzip bomb": gzip.compress(
            text.replace(
                "</JobExchange>", "<!--" + " " * (2 * 1024 * 1024) + "--></JobExchange>"
            ).encode()
        ),
    }


BAD_DOCUMENTS = [
    "not XML",
    "JSON",
    "empty",
    "another root",
    "wrong version",
    "unknown element",
    "truncated",
    "bad vv on the last job",
    "external entity (XXE)",
    "entity bomb",
    "oversize",
    "gzip bomb",
]


@pytest.mark.parametrize("problem", BAD_DOCUMENTS)
def test_a_bad_exchange_document_is_refused_and_changes_nothing(three, documents, problem):
    valid, write = documents
    path = write("bad.jxl", bad_documents(valid)[problem])
    parent = three.client("Parent")
    before = state(three)
    started = time.monotonic()
    with pytest.raises(BadRequest) as refused:
        parent.import_document(str(path))
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert "error 400" in message and three.parent.url in message
    assert len(message) < 1000
    assert "root:" not in message  # no file content leaked (XXE)
    assert state(three) == before


def test_the_valid_document_is_accepted(fresh, documents):
    valid, _ = documents
    answer = fresh.client("Parent").import_document(str(valid))
    assert answer["added"] == 20


def test_a_document_whose_last_element_clashes_is_refused_whole(three, documents, tmp_path):
    """ImportRefused late in the document: the 20 jobs before it are not applied."""
    valid, _ = documents
    reader = exchange.read_document(str(valid))
    with reader:
        elements = list(reader)
        header = reader.header
    admin = three.parent.store.elements()
    user_guid = next(e.guid for e in admin if e.kind == "User")
    clash = Element(
        kind="Job",
        guid=user_guid,
        vv={"Ohio": 5},
        modified=1,
        origin="Ohio",
        fields={"name": "I am a user"},
        local_id=99,
    )
    path = tmp_path / "clash.jxl"
    exchange.write_document(str(path), header, [*elements, clash])
    before = state(three)
    with pytest.raises(BadRequest) as refused:
        three.client("Parent").import_document(str(path))
    assert "is a Job in the document but a User here" in str(refused.value)
    assert state(three) == before


def test_a_job_referencing_an_unknown_guid_is_kept_with_a_warning(fresh, tmp_path):
    """docs/design.md §4: a reference to a GUID the repository does not hold is kept and reported
    as a warning; it resolves when the element arrives. Only malformed documents are
    refused."""
    missing_type = new_guid()
    job = Element(
        kind="Job",
        guid=new_guid(),
        vv={"Ohio": 1},
        modified=1,
        origin="Ohio",
        fields={"name": "orphan", "jobType": missing_type},
        local_id=4242,
    )
    path = tmp_path / "orphan.jxl"
    header = exchange.ExchangeHeader(repository="Ohio", generation=1, since_gen=0, export_time=1)
    exchange.write_document(str(path), header, [job])
    answer = fresh.client("Parent").import_document(str(path))
    assert answer["added"] == 1
    assert any(missing_type in warning for warning in answer["warnings"])
    assert fresh.parent.store.get(job.guid).fields["jobType"] == missing_type
