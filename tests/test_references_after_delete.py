"""Holds and activity records follow their job across a cluster (docs/design.md §4,
"References after a delete"): real emulators on loopback, real runs.

A hold placed on a job that another repository deletes meanwhile ends deleted
everywhere; a job that a newer concurrent edit revives comes back everywhere with the
hold and the activity records it had. What users see is read through the REST API; what
no user can see (a hold left live under a deleted job) is read from each repository's
store.
"""

from __future__ import annotations

import time

import pytest
from cluster import assert_converged, create_job, holdings, make_cluster

from wmsync import synchronize
from wmsync.errors import NotFound


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def sync(cluster, **connected):
    result = synchronize(
        cluster.parent.url,
        cluster.parent_name,
        cluster.table(connected=connected),
        user="tester",
    )
    assert result.status == 0, result.summary_lines()
    return result


def servers(cluster):
    return [cluster.parent, *cluster.children]


def live_children_of(cluster, job_guid):
    """``{repository: [kind of each live hold or activity record of the job]}``."""
    found = {}
    for server in servers(cluster):
        found[cluster.name_of(server)] = sorted(
            e.kind
            for e in server.store.elements(include_deleted=False)
            if e.kind in ("Hold", "Activity") and e.fields.get("job") == job_guid
        )
    return found


def assert_same_everywhere(cluster):
    """Every repository holds the same elements: GUIDs, content and version vectors."""
    prints = {cluster.name_of(s): s.store.fingerprint() for s in servers(cluster)}
    reference = prints[cluster.parent_name]
    for name, found in prints.items():
        differ = sorted(g for g in set(found) | set(reference) if found.get(g) != reference.get(g))
        assert not differ, f"{name} differs from the parent on {differ[:3]}"


def assert_second_run_moves_nothing(cluster):
    generations = [s.store.generation() for s in servers(cluster)]
    again = sync(cluster)
    assert sum(c.sent + c.received for c in again.children) == 0
    assert [s.store.generation() for s in servers(cluster)] == generations


def job_guid(client, job_id):
    return client.get(f"jobs/{job_id}")["guid"]


def test_a_hold_placed_while_the_job_is_deleted_elsewhere_is_deleted_everywhere(three):
    sync(three)  # register
    parent, ohio, az = (three.client(n) for n in three.names)
    job_id = create_job(parent, "deleted in Ohio, held in AZ")
    guid = job_guid(parent, job_id)
    sync(three)

    ohio.post(f"jobs/{job_id}/delete")  # between runs, on two children:
    az.post(f"jobs/{job_id}/holds/create", type=1, comments="placed meanwhile")
    sync(three)
    sync(three)

    assert live_children_of(three, guid) == {"Parent": [], "Ohio": [], "AZ": []}
    for name in three.names:
        with pytest.raises(NotFound):
            three.client(name).get(f"jobs/{job_id}")
    assert_same_everywhere(three)
    for server in servers(three):  # the same automatic change twice is no conflict
        assert server.store.conflicts() == []
    assert_second_run_moves_nothing(three)


def test_a_job_revived_by_a_newer_edit_comes_back_with_its_hold_and_activity(three):
    sync(three)  # register
    parent, ohio, az = (three.client(n) for n in three.names)
    job_id = create_job(ohio, "deleted at the parent, edited in Ohio")
    ohio.post(f"jobs/{job_id}/holds/create", type=1, comments="placed before the delete")
    sync(three)
    holds_before = ohio.get(f"jobs/{job_id}/holds")["holds"]
    activity_before = ohio.get(f"jobs/{job_id}/activity")["activity"]
    assert len(holds_before) == 1 and len(activity_before) == 2

    parent.post(f"jobs/{job_id}/delete")
    sync(three, Ohio="false")  # AZ learns of the delete; Ohio does not
    with pytest.raises(NotFound):
        az.get(f"jobs/{job_id}")
    time.sleep(0.01)  # the edit is newer than the delete
    ohio.post(f"jobs/{job_id}/update", properties='{"description": "still needed"}')
    sync(three)

    view = assert_converged(three)  # jobs with their holds, as users see them
    guid = job_guid(parent, job_id)
    assert view["jobs"][guid][2] == "still needed"
    assert view["jobs"][guid][8] == ((1, "placed before the delete", False),)
    for name in three.names:
        client = three.client(name)
        assert client.get(f"jobs/{job_id}/holds")["holds"] == holds_before
        activity = client.get(f"jobs/{job_id}/activity")["activity"]
        assert [a for a in activity if a in activity_before] == activity_before, name
        assert len(activity) == 3  # and the edit's own record
    assert live_children_of(three, guid) == {
        name: ["Activity", "Activity", "Activity", "Hold"] for name in three.names
    }
    assert_same_everywhere(three)
    # The delete lost to the newer edit, and the parent logged it; nothing else.
    conflicts = {three.name_of(s): s.store.conflicts() for s in servers(three)}
    assert [(c["kind"], c["loser"]["deleted"]) for c in conflicts["Parent"]] == [("Job", True)]
    assert conflicts["Ohio"] == [] and conflicts["AZ"] == []
    assert_second_run_moves_nothing(three)
    assert holdings(az) == holdings(parent)
