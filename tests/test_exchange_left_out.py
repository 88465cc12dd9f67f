"""One element that cannot travel never stops the others (docs/design.md §4, "What the
exchange carries"): the run names it (kind, job id, name, why), sends the rest, reports
the child failed and keeps that direction's watermark, so the next run retries it.

Against emulators on loopback. The bad values are written straight into a repository's
SQLite file (as a repository written before the API's limits, or by another writer,
holds them), leaving the element's generation as it was.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any, Dict, List, Optional

import pytest

from tests.cluster import Cluster, assert_converged, create_job, make_cluster
from wmsync import synchronize
from wmsync.errors import BadRequest
from wmsync.exchange import ExchangeHeader, read_document, write_document
from wmsync.feed import LEAVE_OUT_LIMIT, Chunk, import_chunk
from wmsync.model import MAX_TEXT_CHARS, Element
from wmsync.report import FAILED, SYNCHRONIZED

USER = "tester"
# Beyond what the exchange carries, and beyond libxml2's 10,000,000-byte text node: the
# document holding it could not be read at all.
HUGE = "x" * 10_000_001


def sync(cluster: Cluster) -> Any:
    return synchronize(cluster.parent.url, cluster.parent_name, cluster.table(), user=USER)


def db(server: Any) -> sqlite3.Connection:
    return sqlite3.connect(str(server.store.path))


def row_of(server: Any, job_id: int) -> Dict[str, Any]:
    with db(server) as conn:
        guid, fields, origin, gen = conn.execute(
            "SELECT guid, fields, origin, gen FROM elements WHERE kind = 'Job' AND local_id = ?",
            (job_id,),
        ).fetchone()
    return {"guid": guid, "fields": json.loads(fields), "origin": origin, "gen": gen}


def write_row(server: Any, job_id: int, fields: Dict[str, Any], origin: str) -> None:
    """Write a job's content and origin straight into its row, its generation unchanged."""
    conn = db(server)
    try:
        with conn:
            conn.execute(
                "UPDATE elements SET fields = ?, origin = ? WHERE kind = 'Job' AND local_id = ?",
                (json.dumps(fields), origin, job_id),
            )
    finally:
        conn.close()


def poison(server: Any, job_id: int, field: str, value: str) -> None:
    row = row_of(server, job_id)
    if field == "origin":
        row["origin"] = value
    else:
        row["fields"][field] = value
    write_row(server, job_id, row["fields"], row["origin"])


def watermark(client: Any, peer: str) -> Optional[int]:
    row = next(n for n in client.replication_info()["nodes"] if n["name"] == peer)
    return row.get("lastSyncGen")


def job_names(client: Any) -> List[str]:
    return sorted(client.get(f"jobs/{i}")["name"] for i in client.get("jobs")["jobIds"])


def child(result: Any, name: str) -> Any:
    return next(c for c in result.children if c.repository == name)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("priority", "high", "priority"),  # a value the schema refuses
        ("description", HUGE, "more than the 1000000 the exchange carries"),
        ("origin", "Ohio\x0b", "XML compatible"),  # a version attribute XML cannot hold
    ],
)
def test_a_child_element_that_cannot_travel_is_named_and_the_rest_is_sent(
    emulator, field, value, why
):
    cluster = make_cluster(emulator, "Parent", "Ohio")
    ohio, parent = cluster.client("Ohio"), cluster.client("Parent")
    assert sync(cluster).status == 0
    create_job(ohio, "before")
    bad = create_job(ohio, "Survey 7")
    create_job(ohio, "after")
    good_value = row_of(cluster.children[0], bad)
    poison(cluster.children[0], bad, field, value)
    mark = watermark(ohio, "Parent")

    result = sync(cluster)

    entry = child(result, "Ohio")
    assert result.status == 1 and entry.state == FAILED
    assert f"Job {bad} 'Survey 7'" in entry.error and why in entry.error, entry.error
    assert row_of(cluster.children[0], bad)["guid"] in entry.error
    assert entry.sent > 0
    names = job_names(parent)
    assert "before" in names and "after" in names and "Survey 7" not in names
    assert watermark(ohio, "Parent") == mark  # not moved past the element left out

    # Repaired in place, its generation unchanged: only a watermark that stayed sends it.
    write_row(cluster.children[0], bad, good_value["fields"], good_value["origin"])
    result = sync(cluster)
    assert result.status == 0 and child(result, "Ohio").state == SYNCHRONIZED
    assert "Survey 7" in job_names(parent)
    assert_converged(cluster)
    assert sync(cluster).status == 0


def test_a_parent_element_that_cannot_travel_fails_every_child_that_shares_it(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "Texas")
    parent = cluster.client("Parent")
    assert sync(cluster).status == 0
    bad = create_job(parent, "Survey 9")
    create_job(parent, "fine")
    poison(cluster.parent, bad, "priority", "1e3")

    result = sync(cluster)

    assert result.status == 2
    for name in ("Ohio", "Texas"):
        entry = child(result, name)
        assert entry.state == FAILED and entry.received > 0
        assert f"Job {bad} 'Survey 9'" in entry.error and "'1e3'" in entry.error
        names = job_names(cluster.client(name))
        assert "fine" in names and "Survey 9" not in names

    # The user repairs it through the REST API: the next run sends it to both.
    parent.post(f"jobs/{bad}/update", priority=2)
    result = sync(cluster)
    assert result.status == 0, [c.error for c in result.children]
    assert_converged(cluster)


def test_a_window_holding_only_elements_that_cannot_travel_is_not_taken_for_empty(emulator):
    # The push counts the window its children share and does not export one counted
    # empty (docs/protocol.md, countOnly): the count must include what the export would
    # leave out, or the children's watermarks would move past them unreported.
    cluster = make_cluster(emulator, "Parent", "Ohio", "Texas")
    parent = cluster.client("Parent")
    bad = create_job(parent, "Survey 11")
    assert sync(cluster).status == 0
    marks = {name: watermark(parent, name) for name in ("Ohio", "Texas")}
    parent.post(f"jobs/{bad}/update", description="edited")  # the job and its activity
    poison(cluster.parent, bad, "priority", "1e3")
    with db(cluster.parent) as conn:
        assert [
            kind
            for (kind,) in conn.execute(
                "SELECT kind FROM elements WHERE gen > ? ORDER BY kind", (marks["Ohio"],)
            )
        ] == ["Activity", "Job"]
        conn.execute(
            "UPDATE elements SET origin = 'Parent\x0b' WHERE kind = 'Activity' AND gen > ?",
            (marks["Ohio"],),
        )
    conn.close()

    result = sync(cluster)

    assert result.status == 2
    for name in ("Ohio", "Texas"):
        entry = child(result, name)
        assert entry.state == FAILED and f"Job {bad} 'Survey 11'" in entry.error, entry.error
        assert watermark(parent, name) == marks[name]
    with db(cluster.parent) as conn:  # repaired in place: only a watermark that stayed
        conn.execute("UPDATE elements SET origin = 'Parent' WHERE origin = 'Parent\x0b'")
    conn.close()
    parent.post(f"jobs/{bad}/update", priority=2)
    assert sync(cluster).status == 0
    assert_converged(cluster)


def test_an_element_the_receiving_server_refuses_is_left_out_and_the_rest_imported(emulator):
    """Ohio holds a Hold under the GUID the parent's new job has (written by another
    writer): its import refuses the document with a 400 naming that GUID. The run
    imports the rest without it, in the same run, and names it."""
    cluster = make_cluster(emulator, "Parent", "Ohio", "Texas")
    parent = cluster.client("Parent")
    assert sync(cluster).status == 0
    create_job(parent, "one")
    clash = create_job(parent, "Clash")
    create_job(parent, "two")
    guid = row_of(cluster.parent, clash)["guid"]
    with db(cluster.children[0]) as conn:  # generation 0: never exported by Ohio
        conn.execute(
            "INSERT INTO elements (guid, kind, local_id, fields, vv, modified, origin, "
            "deleted, via, gen) VALUES (?, 'Hold', NULL, '{}', '{}', 1, 'Ohio', 0, '', 0)",
            (guid,),
        )
    conn.close()

    result = sync(cluster)

    ohio, texas = child(result, "Ohio"), child(result, "Texas")
    assert texas.state == SYNCHRONIZED
    assert ohio.state == FAILED and ohio.received > 0
    assert f"Job {clash} 'Clash' ({guid})" in ohio.error, ohio.error
    assert "refused" in ohio.error and "Hold here" in ohio.error
    assert sorted(job_names(cluster.client("Ohio"))) == ["one", "two"]

    with db(cluster.children[0]) as conn:  # the other writer's row goes
        conn.execute("DELETE FROM elements WHERE guid = ?", (guid,))
    conn.close()
    result = sync(cluster)
    assert result.status == 0, [c.error for c in result.children]
    assert "Clash" in job_names(cluster.client("Ohio"))
    assert_converged(cluster)


def test_the_file_exchange_makes_no_file_that_would_skip_an_element(emulator, tmp_path):
    """A file moves the peer's mark past all it covers, so it cannot leave one out."""
    from wmsync.errors import SyncRefused
    from wmsync.filesync import export_job_data

    cluster = make_cluster(emulator, "HQ", "Office")
    hq = cluster.parent
    bad = create_job(cluster.client("HQ"), "Survey 3")
    poison(hq, bad, "priority", "soon")
    out = tmp_path / "join.zip"
    with pytest.raises(SyncRefused, match=rf"Job {bad} 'Survey 3' .*priority"):
        export_job_data(
            hq.url,
            "Office",
            str(out),
            user=USER,
            register_child=True,
            child_url=cluster.children[0].url,
        )
    assert not out.exists()


# -- the exporter and the import's retry on their own --------------------------------

HEADER = ExchangeHeader("Ohio", 9, 0, 1)


def job(number: int, **fields: str) -> Element:
    content = {"name": f"Job {number}", "priority": "1", **fields}
    return Element("Job", str(uuid.uuid4()), {"Ohio": 1}, 5, "Ohio", content, local_id=number)


def test_the_writer_refuses_what_no_reader_accepts_unless_asked_to_leave_it_out(tmp_path):
    from wmsync.errors import ExchangeFormatError

    elements = [
        job(1),
        job(2, priority="high"),
        job(3, notes="y" * (MAX_TEXT_CHARS + 1)),
        job(4, notes="y" * MAX_TEXT_CHARS),
    ]
    with pytest.raises(ExchangeFormatError, match="priority"):
        write_document(str(tmp_path / "a.jxl"), HEADER, elements)
    left_out: List[Any] = []
    assert write_document(str(tmp_path / "b.jxl"), HEADER, elements, left_out=left_out) == 2
    assert [(e.local_id, e.name) for e in left_out] == [(2, "Job 2"), (3, "Job 3")]
    assert "notes holds 1000001 characters" in left_out[1].why
    with read_document(str(tmp_path / "b.jxl")) as reader:
        assert [e.local_id for e in reader] == [1, 4]


class Refusing:
    """A target whose import refuses documents holding a bad element, as a stricter
    server would: by line and element (``by_line``) or by GUID."""

    def __init__(self, bad: List[str], by_line: bool) -> None:
        self.bad, self.by_line = bad, by_line
        self.imported: List[List[str]] = []

    def import_document(self, path: str, merge: bool = True, *, gzip: bool = False) -> Dict:
        with read_document(path) as reader:
            lines = []
            for element in reader:
                lines.append((reader.line, element))
        for line, element in lines:
            if element.guid in self.bad:
                if self.by_line:
                    raise BadRequest(
                        400,
                        "Invalid exchange document: too strict",
                        [f"line {line}", "element Job"],
                    )
                raise BadRequest(400, f"Document refused: element {element.guid} is odd")
        self.imported.append([e.guid for _, e in lines])
        return {"added": len(lines)}


@pytest.mark.parametrize("by_line", [True, False])
def test_import_leaves_out_each_element_the_target_names_and_imports_the_rest(tmp_path, by_line):
    elements = [job(n, notes="two\nlines") for n in range(1, 7)]
    path = tmp_path / "chunk.jxl"
    write_document(str(path), HEADER, elements)
    bad = [elements[1].guid, elements[4].guid]
    target = Refusing(bad, by_line)
    left_out: List[Any] = []
    answer = import_chunk(target, Chunk(0, str(path), 6, False), str(tmp_path), left_out)
    assert answer == {"added": 4}
    assert target.imported == [[e.guid for e in elements if e.guid not in bad]]
    assert [e.guid for e in left_out] == bad
    assert all("refused" in e.why for e in left_out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk.jxl"]  # copies removed


def test_import_gives_up_past_the_limit_or_when_nothing_is_named(tmp_path):
    elements = [job(n) for n in range(1, LEAVE_OUT_LIMIT + 3)]
    path = tmp_path / "chunk.jxl"
    write_document(str(path), HEADER, elements)
    target = Refusing([e.guid for e in elements[: LEAVE_OUT_LIMIT + 1]], by_line=False)
    with pytest.raises(BadRequest):
        import_chunk(target, Chunk(0, str(path), len(elements), False), str(tmp_path), [])

    class Vague:
        def import_document(self, *args: Any, **kwargs: Any) -> Dict:
            raise BadRequest(400, "Request too large")

    left_out: List[Any] = []
    with pytest.raises(BadRequest, match="too large"):
        import_chunk(Vague(), Chunk(0, str(path), 1, False), str(tmp_path), left_out)
    assert left_out == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk.jxl"]


@pytest.mark.parametrize(
    "value",
    ["0", "7", "-3", "+3", "007", "9" * 18, "9" * 19, "-" + "9" * 18, "٣", "²", " 1", "1.0", ""],
)
def test_the_writer_leaves_out_exactly_what_the_schema_refuses(tmp_path, value):
    """Its shortcuts for common values never let through what a reader refuses, nor
    leave out what a reader accepts: the schema decides."""
    from lxml import etree

    from wmsync.exchange.parsers import new_parser
    from wmsync.exchange.schema import element_schema

    element = job(1, priority=value, percentageComplete=value)
    left_out: List[Any] = []
    path = tmp_path / "one.jxl"
    write_document(str(path), HEADER, [element], left_out=left_out)
    markup = (
        f'<Job guid="{element.guid}" id="1" vv="Ohio:1" modified="5" origin="Ohio" '
        f'priority="{value}" percentageComplete="{value}"/>'
    )
    accepted = element_schema().validate(etree.fromstring(markup.encode(), new_parser()))
    assert (left_out == []) == accepted
    with read_document(str(path)) as reader:
        assert len(list(reader)) == (1 if accepted else 0)


def test_what_is_named_stays_short(tmp_path):
    """A schema message quotes the bad value; a name can be long: the report is cut."""
    from wmsync.exchange.leftout import WHY_LIMIT

    left_out: List[Any] = []
    element = job(1, name="n" * 5000, priority="9" * 50_000 + "x")
    write_document(str(tmp_path / "d.jxl"), HEADER, [element], left_out=left_out)
    (entry,) = left_out
    assert len(entry.why) <= WHY_LIMIT + 1 and len(entry.describe()) < 600
    assert entry.to_dict()["id"] == 1 and entry.to_dict()["kind"] == "Job"
