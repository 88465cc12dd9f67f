"""A job has one id on every repository: a child that joins with jobs of its own has
them renumbered into its block, on the child, once (docs/design.md §4).

Live emulators on loopback, real HTTP and SQLite; the CLI as a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List

import pytest
from cluster import assert_converged, create_job, make_cluster

from wmsync import plan, synchronize
from wmsync.client import WMServerClient

USER = "tester"
BLOCK = 1_000_000
OHIO_BLOCK = range(1 + BLOCK, 1 + 2 * BLOCK)


def ids_by_guid(client: WMServerClient) -> Dict[str, int]:
    """Every live job's id, by GUID, through the REST API."""
    found = {}
    for job_id in client.get("jobs")["jobIds"]:
        found[client.get(f"jobs/{job_id}")["guid"]] = int(job_id)
    return found


def messages(client: WMServerClient, job_id: int) -> List[str]:
    return [a["message"] for a in client.get(f"jobs/{job_id}/activity")["activity"]]


@pytest.fixture
def joining(emulator):
    """Parent holds jobs 1-3; Ohio made jobs 1-2 of its own (other jobs) and holds a
    copy of the parent's job 3, received before and edited since; AZ is empty."""
    three = make_cluster(emulator, "Parent", "Ohio", "AZ")
    parent, ohio = three.client("Parent"), three.client("Ohio")
    for name in ("hq one", "hq two", "hq three"):
        create_job(parent, name)
    assert [create_job(ohio, "ohio one"), create_job(ohio, "ohio two")] == [1, 2]
    shared = three.parent.store.by_id("Job", 3)
    three.children[0].store.apply_elements([shared.element], sender="Parent")
    ohio.post("jobs/3/update", description="edited on Ohio")
    yield three
    three.close()


def test_a_joining_childs_own_jobs_get_one_id_everywhere_once(joining):
    three = joining
    ohio = three.client("Ohio")
    own = {guid: i for guid, i in ids_by_guid(ohio).items() if i in (1, 2)}
    received = next(g for g, i in ids_by_guid(ohio).items() if i == 3)

    first = synchronize(three.parent.url, "Parent", three.table(), user=USER)

    assert first.status == 0, first.summary_lines()
    view = assert_converged(three)  # ids included: one id per job on every repository
    ids = {name: ids_by_guid(three.client(name)) for name in three.names}
    assert ids["Parent"] == ids["Ohio"] == ids["AZ"] and len(ids["Parent"]) == 5
    assert sorted(ids["Parent"][g] for g in own) == [1 + BLOCK, 2 + BLOCK]
    assert ids["Parent"][received] == 3  # a copy received from the parent keeps its id
    assert {ids["Parent"][g] for g in ids["Parent"] if g not in own} == {1, 2, 3}
    assert all(i in OHIO_BLOCK for i in (ids["Parent"][g] for g in own))
    for guid, old in own.items():
        new = ids["Ohio"][guid]
        for name in three.names:  # the record travelled like any activity record
            assert f"Job renumbered from {old} to {new} when joining Parent" in messages(
                three.client(name), new
            )
    assert not any("renumbered" in m for m in messages(ohio, 3))
    # The report: old -> new on Ohio; nothing was renumbered anywhere else.
    ohio_result, az_result = first.children
    assert ohio_result.renumbered == 2 and az_result.renumbered == 0
    assert ohio_result.renumbered_ids == [
        {"repository": "Ohio", "kind": "Job", "guid": g, "from": old, "to": ids["Ohio"][g]}
        for g, old in sorted(own.items(), key=lambda item: item[1])
    ]
    assert json.loads(first.to_json())["children"][0]["renumbered_ids"] == (
        ohio_result.renumbered_ids
    )
    line = first.summary_lines()[0]
    assert f"renumbered 2 (on Ohio: job 1 -> {1 + BLOCK}, job 2 -> {2 + BLOCK})" in line

    second = synchronize(three.parent.url, "Parent", three.table(), user=USER)
    assert second.status == 0, second.summary_lines()
    assert [(c.renumbered, c.sent, c.received) for c in second.children] == [(0, 0, 0)] * 2
    assert assert_converged(three) == view


def test_plan_predicts_the_renumbering_and_changes_nothing(joining):
    three = joining
    stores = [three.parent.store] + [child.store for child in three.children]
    before = [(s.generation(), s.fingerprint(), s.nodes()) for s in stores]
    ohio_ids = ids_by_guid(three.client("Ohio"))

    predicted = plan(three.parent.url, "Parent", three.table(), user=USER)

    assert predicted.status == 0, predicted.summary_lines()
    assert [(s.generation(), s.fingerprint(), s.nodes()) for s in stores] == before
    assert ids_by_guid(three.client("Ohio")) == ohio_ids
    ohio, az = predicted.children
    assert [(e["from"], e["to"]) for e in ohio.renumber] == [(1, 1 + BLOCK), (2, 2 + BLOCK)]
    assert az.renumber == []
    assert predicted.to_dict()["children"][0]["renumber"] == ohio.renumber
    line = predicted.summary_lines()[0]
    assert f"would renumber 2 job(s) as it joins: 1 -> {1 + BLOCK}, 2 -> {2 + BLOCK}" in line

    done = synchronize(three.parent.url, "Parent", three.table(), user=USER)
    assert [(e["from"], e["to"]) for e in done.children[0].renumbered_ids] == [
        (e["from"], e["to"]) for e in ohio.renumber
    ]
    # The pull was predicted exactly, the activity records included.
    assert done.children[0].sent == ohio.pull
    assert plan(three.parent.url, "Parent", three.table(), user=USER).children[0].renumber == []


def test_the_renumber_endpoint_is_idempotent_and_checks_its_input(joining):
    ohio, store = joining.client("Ohio"), joining.children[0].store
    versions = {e.guid: e for e in store.elements() if e.kind == "Job"}
    args = dict(name="Ohio", peer="Parent", job_id_start=1 + BLOCK, job_id_block=BLOCK)
    assert len(ohio.renumber_own_jobs(**args, dry_run=True)) == 2
    assert sorted(ids_by_guid(ohio).values()) == [1, 2, 3]
    assert [(e["from"], e["to"]) for e in ohio.renumber_own_jobs(**args)] == [
        (1, 1 + BLOCK),
        (2, 2 + BLOCK),
    ]
    assert ohio.renumber_own_jobs(**args) == []
    # An id is not content: each job keeps its version and generation.
    for guid, was in versions.items():
        now = store.get(guid)
        assert now is not None and (now.element.vv, now.element.modified, now.gen) == (
            was.element.vv,
            was.element.modified,
            was.gen,
        )
        assert now.element.same_content(was.element)
    for bad, field in (
        ({"name": "Utah"}, "name"),
        ({"job_id_start": 0}, "jobIdStart"),
        ({"job_id_block": 0}, "jobIdBlock"),
    ):
        with pytest.raises(Exception) as refused:
            ohio.renumber_own_jobs(**{**args, **bad})
        assert field in str(refused.value)


def test_the_cli_text_shows_the_renumbering(joining):
    three = joining
    common = [
        "--parent-url",
        three.parent.url,
        "--parent-name",
        "Parent",
        "--children",
        three.table(),
        "--user",
        USER,
    ]
    planned = _cli("plan", *common)
    assert planned.returncode == 0, planned.stderr
    assert f"would renumber 2 job(s) as it joins: 1 -> {1 + BLOCK}, 2 -> {2 + BLOCK}" in (
        planned.stdout
    )
    done = _cli("sync", *common)
    assert done.returncode == 0, done.stderr
    assert f"renumbered 2 (on Ohio: job 1 -> {1 + BLOCK}, job 2 -> {2 + BLOCK})" in done.stdout


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def test_replicate_joins_a_child_with_jobs_of_its_own_under_one_id(joining, emulator):
    from wmsync.replica import default_replica_factory
    from wmsync.replicate import replicate

    three = joining
    texas = emulator("Texas")
    with WMServerClient(texas.url, user=USER) as client:
        mine = [create_job(client, "texas one"), create_job(client, "texas two")]
        assert mine == [1, 2]
        guids = {client.get(f"jobs/{i}")["guid"]: i for i in mine}
        done = replicate(
            three.parent.url, "Parent", texas.url, "Texas", default_replica_factory(user=USER)
        )
        assert done.status == 0, done.error
        start = done.id_block[0] if done.id_block else 0
        ids = ids_by_guid(client)
        assert sorted(ids[g] for g in guids) == [start, start + 1]
        parent_ids = ids_by_guid(three.client("Parent"))
        assert all(parent_ids[g] == ids[g] for g in guids)
    text = "\n".join(done.lines())
    assert f"ids changed: on Texas: job 1 -> {start}, job 2 -> {start + 1}" in text
    assert done.to_dict()["children"][0]["renumbered_ids"][0]["to"] == start


def test_a_stock_child_keeps_its_own_ids_and_says_so_once(emulator, tmp_path, caplog):
    """Esri's documented operations change no job id: a stock child's own jobs keep
    theirs, and where one is taken the parent's copy gets another (docs/stock.md)."""
    parent, stock = emulator("Parent"), emulator("Ohio", stock=True)
    with WMServerClient(parent.url, user=USER) as hq, WMServerClient(stock.url, user=USER) as ohio:
        for name in ("hq one", "hq two"):
            create_job(hq, name)
        create_job(ohio, "ohio one")
        caplog.set_level("INFO", logger="wmsync.stock.replica")
        table = f"Ohio true {stock.url} ''"
        predicted = plan(parent.url, "Parent", table, user=USER, state=tmp_path / "s.sqlite")
        assert predicted.status == 0 and predicted.children[0].renumber == []
        caplog.clear()
        result = synchronize(parent.url, "Parent", table, user=USER, state=tmp_path / "s.sqlite")
        assert result.status == 0, result.summary_lines()
        assert ohio.get("jobs/1")["name"] == "ohio one"  # kept its id on Ohio
        changes = {(c["repository"], c["from"]): c["to"] for c in result.children[0].renumbered_ids}
        # Only the imports renumbered, where an id was taken: one job, two ids.
        assert set(changes) == {("Parent", 1), ("Ohio", 1)}
        assert hq.get(f"jobs/{changes['Parent', 1]}")["name"] == "ohio one"
        assert ohio.get(f"jobs/{changes['Ohio', 1]}")["name"] == "hq one"
    told = [r for r in caplog.records if "keep their ids" in r.getMessage()]
    assert len(told) == 1 and "Ohio" in told[0].getMessage()
