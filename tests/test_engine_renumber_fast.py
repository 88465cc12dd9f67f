"""When the engine renumbers a joining child's own jobs, fast: in-memory replicas
(tests/memory_replica.py). tests/test_engine_renumber.py does it on live emulators.
"""

from __future__ import annotations

import pytest
from memory_replica import MemoryCluster, url_of

from wmsync import plan, synchronize
from wmsync.report import FAILED, SYNCHRONIZED

BLOCK = 1_000_000


@pytest.fixture
def mem() -> MemoryCluster:
    cluster = MemoryCluster("Parent", "Ohio", "AZ")
    cluster["Ohio"].own_job(1)
    cluster["Ohio"].own_job(2)
    cluster["Ohio"].own_job(7, vv={"Parent": 1})  # a copy it received: keeps its id
    cluster["AZ"].own_job(5, vv={"AZ": 2, "AZ~1a2b": 1})  # made here, then restored
    return cluster


def run(cluster: MemoryCluster, **options):
    return synchronize(
        url_of("Parent"), "Parent", cluster.table("Ohio", "AZ"), replica_factory=cluster, **options
    )


def test_joining_children_renumber_once_before_anything_is_sent(mem):
    first = run(mem)

    assert first.status == 0
    assert sorted(mem["Ohio"].job_ids().values()) == [7, 1 + BLOCK, 2 + BLOCK]
    assert list(mem["AZ"].job_ids().values()) == [1 + 2 * BLOCK]
    ohio, az = first.children
    assert [(e["repository"], e["from"], e["to"]) for e in ohio.renumbered_ids] == [
        ("Ohio", 1, 1 + BLOCK),
        ("Ohio", 2, 2 + BLOCK),
    ]
    assert [(e["from"], e["to"]) for e in az.renumbered_ids] == [(5, 1 + 2 * BLOCK)]
    for name in ("Ohio", "AZ"):
        ops = [call[0] for call in mem[name].calls]
        # On the child, with the peer's name, before its export (the pull).
        assert ops.index("renumber_own_jobs") < ops.index("export")
        (call,) = mem[name].ops("renumber_own_jobs")
        assert call[1:3] == (name, "Parent") and call[-1] is False
    assert mem["Parent"].ops("renumber_own_jobs") == []  # the parent never renumbers

    second = run(mem)
    assert second.status == 0
    assert [c.renumbered for c in second.children] == [0, 0]
    assert all(len(mem[n].ops("renumber_own_jobs")) == 1 for n in ("Ohio", "AZ"))


def test_a_failed_renumbering_leaves_the_child_joining_for_the_next_run(mem):
    mem["Ohio"].faults["renumber_own_jobs"] = 1
    first = run(mem)
    ohio = first.children[0]
    assert ohio.state == FAILED and "being registered" in (ohio.error or "")
    assert sorted(mem["Ohio"].job_ids().values()) == [1, 2, 7]
    assert mem["Ohio"].ops("export") == []  # nothing of it was sent

    again = run(mem)
    assert again.children[0].state == SYNCHRONIZED
    assert [(e["from"], e["to"]) for e in again.children[0].renumbered_ids] == [
        (1, 1 + BLOCK),
        (2, 2 + BLOCK),
    ]


def test_a_child_that_keeps_a_row_of_its_parent_is_not_renumbered(mem):
    assert run(mem).status == 0
    # Its own row is lost (the parent's row of it and its row of the parent stay), and
    # it made a job outside the block meanwhile: it may have sent jobs already, so no
    # id of it moves.
    del mem["Ohio"].nodes["Ohio"]
    mem["Ohio"].own_job(9)
    assert run(mem).status == 0
    assert len(mem["Ohio"].ops("renumber_own_jobs")) == 1
    assert 9 in mem["Ohio"].job_ids().values()


def test_plan_asks_for_a_dry_run_and_moves_nothing(mem):
    predicted = plan(url_of("Parent"), "Parent", mem.table("Ohio", "AZ"), replica_factory=mem)
    assert predicted.status == 0
    ohio, az = predicted.children
    assert [(e["from"], e["to"]) for e in ohio.renumber] == [(1, 1 + BLOCK), (2, 2 + BLOCK)]
    assert [(e["from"], e["to"]) for e in az.renumber] == [(5, 1 + 2 * BLOCK)]
    assert sorted(mem["Ohio"].job_ids().values()) == [1, 2, 7]
    assert mem["Ohio"].ops("renumber_own_jobs")[0][-1] is True  # dry run
    assert (
        "would renumber 2 job(s) as it joins: 1 -> 1000001, 2 -> 1000002"
        in (predicted.summary_lines()[0])
    )
    assert run(mem).status == 0
    again = plan(url_of("Parent"), "Parent", mem.table("Ohio", "AZ"), replica_factory=mem)
    assert [entry.renumber for entry in again.children] == [[], []]
    assert len(mem["Ohio"].ops("renumber_own_jobs")) == 2  # the plan asks no more


def test_the_text_line_shows_the_first_few_and_how_many_more():
    cluster = MemoryCluster("Parent", "Ohio")
    for job_id in range(1, 9):
        cluster["Ohio"].own_job(job_id)
    result = synchronize(url_of("Parent"), "Parent", cluster.table("Ohio"), replica_factory=cluster)
    line = result.summary_lines()[0]
    assert "renumbered 8 (on Ohio: job 1 -> 1000001, job 2 -> 1000002," in line
    assert "job 5 -> 1000005; and 3 more)" in line
    assert len(result.to_dict()["children"][0]["renumbered_ids"]) == 8
