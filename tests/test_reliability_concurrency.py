"""Concurrent runs and users editing during a run; clocks skewed by an hour.

There is no lock (docs/design.md §4): every import is one transaction and idempotent,
and watermarks only move forward, so two runs at once, or edits made while a run is
in progress, can at worst make a later run redo a window. After a quiet run the cluster
must converge with every edit kept; a further run moves nothing.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from cluster import Cluster, assert_converged, create_job, make_cluster

from wmsync import SyncListener, synchronize
from wmsync.client import WMServerClient

USER = "tester"
HOUR = 3_600_000


def sync(cluster, table=None, **options):
    return synchronize(cluster.parent.url, "Parent", table or cluster.table(), user=USER, **options)


def fingerprints_equal(cluster):
    prints = [s.store.fingerprint() for s in (cluster.parent, *cluster.children)]
    return all(p == prints[0] for p in prints[1:])


def moved(result):
    return sum(c.sent + c.received for c in result.children)


@pytest.fixture
def four(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ", "Utah")
    assert sync(cluster).status == 0  # registered: jobs are numbered from each block
    yield cluster
    cluster.close()


def test_two_runs_at_once_with_users_editing_everywhere_lose_nothing(four):
    names = four.names
    shared = create_job(four.client("Parent"), "shared")
    assert sync(four).status == 0
    stop = threading.Event()
    written = defaultdict(list)  # (node, job id) -> descriptions, in order
    shared_tokens = []
    created = []
    errors = []
    counter = itertools.count()

    def editor(name):
        client = four.client(name)
        own = []
        try:
            while not stop.is_set() or len(own) < 3:
                token = f"{name}-{next(counter)}"
                if len(own) < 3 or next(counter) % 3 == 0:
                    own.append(create_job(client, f"job {token}", description=token))
                    created.append(f"job {token}")
                    written[(name, own[-1])].append(token)
                else:
                    job = own[next(counter) % len(own)]
                    client.post(f"jobs/{job}/update", properties=json.dumps({"description": token}))
                    written[(name, job)].append(token)
                if next(counter) % 4 == 0:
                    client.post(
                        f"jobs/{shared}/update",
                        properties=json.dumps({"description": f"shared {token}"}),
                    )
                    shared_tokens.append(f"shared {token}")
        except Exception as exc:  # reported below: a thread must not fail silently
            errors.append(f"{name}: {exc!r}")

    results = []

    def runner():
        try:
            results.append(sync(four))
        except Exception as exc:
            errors.append(f"run: {exc!r}")

    editors = [threading.Thread(target=editor, args=(n,)) for n in names]
    runners = [threading.Thread(target=runner) for _ in range(2)]
    for thread in editors + runners:
        thread.start()
    for thread in runners:
        thread.join(120)
    stop.set()
    for thread in editors:
        thread.join(60)
    assert not errors, errors
    assert len(results) == 2
    print(
        f"{len(created)} jobs created, {sum(map(len, written.values()))} descriptions "
        f"and {len(shared_tokens)} shared edits written during two runs"
    )
    assert all(r.status >= 0 for r in results), [r.summary_lines() for r in results]

    quiet = sync(four)
    assert quiet.status == 0, quiet.summary_lines()
    assert fingerprints_equal(four)
    view = assert_converged(four)
    jobs = {job[1]: job for job in view["jobs"].values()}
    assert sorted(jobs) == sorted([*created, "shared"])  # none lost, none twice
    assert len({job[0] for job in jobs.values()}) == len(jobs)  # ids unique
    for (name, job_id), tokens in written.items():
        found = [job for job in jobs.values() if job[0] == job_id]
        assert found and found[0][2] == tokens[-1], (name, job_id, tokens, found)
    if shared_tokens:
        assert jobs["shared"][2] in shared_tokens
        # every other last word on the shared job is superseded or a logged loser
    again = sync(four)
    assert again.status == 0 and moved(again) == 0


def test_concurrent_runs_on_a_quiet_cluster_apply_every_change_once(four):
    for name in four.names:
        for i in range(5):
            create_job(four.client(name), f"{name} {i}")
    results = []
    threads = [threading.Thread(target=lambda: results.append(sync(four))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3 and all(r.status == 0 for r in results), [
        r.summary_lines() for r in results
    ]
    sync(four)
    assert fingerprints_equal(four)
    view = assert_converged(four)
    assert len(view["jobs"]) == 20
    again = sync(four)
    assert moved(again) == 0


# -- clock skew ----------------------------------------------------------------------


@pytest.fixture
def skewed(emulator):
    """Parent one hour ahead, Ohio one hour behind, AZ on time (and the client too)."""
    parent = emulator("Parent", clock_offset_ms=HOUR)
    ohio = emulator("Ohio", clock_offset_ms=-HOUR)
    az = emulator("AZ")
    cluster = Cluster(parent, [ohio, az])
    for server in (parent, ohio, az):
        cluster.clients[cluster.name_of(server)] = WMServerClient(server.url, user=USER)
    assert sync(cluster).status == 0
    yield cluster
    cluster.close()


def description(cluster, name, job_id):
    return cluster.client(name).get(f"jobs/{job_id}")["description"]


@pytest.mark.parametrize(
    "first,second", [("Parent", "Ohio"), ("Ohio", "Parent"), ("AZ", "Ohio"), ("Ohio", "AZ")]
)
def test_a_later_edit_wins_whatever_the_clocks_say(skewed, first, second):
    job = create_job(skewed.client("Parent"), "skewed")
    assert sync(skewed).status == 0
    skewed.client(first).post(f"jobs/{job}/update", properties='{"description": "first"}')
    assert sync(skewed).status == 0
    skewed.client(second).post(f"jobs/{job}/update", properties='{"description": "second"}')
    result = sync(skewed)
    assert result.status == 0 and not result.conflicts
    for name in skewed.names:
        assert description(skewed, name, job) == "second", name
    assert not any(s.store.conflicts() for s in (skewed.parent, *skewed.children))


def test_concurrent_edits_under_skew_pick_one_winner_and_log_the_loser(skewed):
    job = create_job(skewed.client("AZ"), "contested")
    assert sync(skewed).status == 0
    skewed.client("Ohio").post(f"jobs/{job}/update", properties='{"description": "Ohio"}')
    skewed.client("Parent").post(f"jobs/{job}/update", properties='{"description": "HQ"}')
    assert sync(skewed).status == 0
    winner = description(skewed, "Parent", job)
    assert winner == "HQ"  # concurrent: the newer modified wins, and HQ's clock is ahead
    assert all(description(skewed, n, job) == winner for n in skewed.names)
    losers = [c for c in skewed.parent.store.conflicts() if c["kind"] == "Job"]
    assert [c["loser"]["content"]["description"] for c in losers] == ["Ohio"]
    assert fingerprints_equal(skewed)


class Warnings(SyncListener):
    def __init__(self):
        self.texts = []

    def warning(self, text):
        self.texts.append(text)


def test_a_row_time_from_a_skewed_client_narrows_nothing(skewed):
    """The table's time never narrows what is sent: a time two hours "in the future" of
    the child's clock (the client's own) only earns a warning."""
    job = create_job(skewed.client("Ohio"), "made before the row time")
    future = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    listener = Warnings()
    result = sync(skewed, skewed.table(future), listener=listener)
    assert result.status == 0
    assert any("row time ignored" in text for text in listener.texts)
    assert all(description(skewed, n, job) is not None for n in skewed.names)
    assert fingerprints_equal(skewed)
    # The Last Synchronized rows carry the parent's clock; fed back, no warning.
    listener = Warnings()
    again = sync(skewed, result.last_sync_text, listener=listener)
    assert again.status == 0 and moved(again) == 0
    assert not any("row time ignored" in text for text in listener.texts)


# -- concurrent first runs: job id blocks ----------------------------------------------


class RacingParent:
    """The parent as one run sees it, while another run registers Ohio at the same
    moment: whenever this run writes Utah's job id block, Ohio's row takes the same
    block just before or just after (``times`` times)."""

    def __init__(self, client, rival, when, times):
        self._client, self._rival, self._when, self._times = client, rival, when, times

    def __getattr__(self, name):
        return getattr(self._client, name)

    def update_node(self, name, **fields):
        racing = name == "Utah" and fields.get("job_id_start") is not None and self._times
        if racing and self._when == "before":
            self._plant(fields["job_id_start"])
        answer = self._client.update_node(name, **fields)
        if racing and self._when == "after":
            self._plant(fields["job_id_start"])
        return answer

    def _plant(self, start):
        self._times -= 1
        self._rival.update_node(
            "Ohio",
            server_url="http://127.0.0.1:9/Ohio",
            is_parent=False,
            is_connected=True,
            job_id_start=start,
            job_id_block=1_000_000,
        )


def racing_factory(cluster, when, times):
    def make(url):
        client = WMServerClient(url, user=USER)
        if url.rstrip("/") == cluster.parent.url.rstrip("/"):
            return RacingParent(client, cluster.client("Parent"), when, times)
        return client

    return make


def blocks(client):
    return {n["name"]: n.get("jobIdStart") for n in client.replication_info()["nodes"]}


@pytest.mark.parametrize("when", ["before", "after"])
def test_concurrent_first_runs_never_share_a_job_id_block(emulator, when):
    three = make_cluster(emulator, "Parent", "Ohio", "Utah")
    try:
        utah_only = three.table(connected={"Ohio": "false"})
        first = sync(three, utah_only, client_factory=racing_factory(three, when, 1))
        assert first.status == 0, first.summary_lines()
        on_parent = blocks(three.client("Parent"))
        ohio, utah = on_parent["Ohio"], on_parent["Utah"]
        assert abs(ohio - utah) >= 1_000_000, on_parent  # disjoint: Utah moved off Ohio's
        assert blocks(three.client("Utah"))["Utah"] == utah  # the child got the kept one
        assert sync(three).status == 0  # Ohio's run goes on with the block it wrote
        assert blocks(three.client("Ohio"))["Ohio"] == ohio
        ids = {create_job(three.client(name), f"new on {name}") for name in ("Ohio", "Utah")}
        assert len(ids) == 2
        assert sync(three).status == 0
        view = assert_converged(three)
        assert len(view["jobs"]) == 2
    finally:
        three.close()


def test_a_block_that_keeps_being_taken_fails_the_child_and_hands_it_nothing(emulator):
    three = make_cluster(emulator, "Parent", "Ohio", "Utah")
    try:
        utah_only = three.table(connected={"Ohio": "false"})
        result = sync(three, utah_only, client_factory=racing_factory(three, "after", 99))
        assert result.status == 1
        (utah,) = [c for c in result.children if c.name == "Utah"]
        assert "no free job id block" in utah.error and "Traceback" not in utah.error
        assert "Utah" not in blocks(three.client("Utah"))  # no block was handed to it
        # The next run checks the block again before handing it over; Ohio's claim,
        # never handed to Ohio either, is checked again too.
        assert sync(three).status == 0
        on_parent = blocks(three.client("Parent"))
        assert abs(on_parent["Ohio"] - on_parent["Utah"]) >= 1_000_000, on_parent
        for name in ("Ohio", "Utah"):
            assert blocks(three.client(name))[name] == on_parent[name]
    finally:
        three.close()
