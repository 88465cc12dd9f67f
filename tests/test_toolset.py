"""The replication toolset (docs/design.md §11) against emulators on loopback: cluster
status, the conflict log and restore, Clear Job Replication Information, Replicate
Job Data."""

from __future__ import annotations

import json

import pytest
from cluster import assert_converged, create_job, generation, job_id_by_name, make_cluster

from wmsync.clear import clear_cluster, clear_repository
from wmsync.client import WMServerClient
from wmsync.conflicts import conflict_entries, restore
from wmsync.engine import synchronize
from wmsync.errors import MissingExtensions, NotFound, SyncRefused
from wmsync.replica import default_replica_factory
from wmsync.replicate import replicate
from wmsync.status import cluster_status


def factory():
    return default_replica_factory(user="tester")


def sync(cluster, table=None, **options):
    result = synchronize(
        cluster.parent.url,
        cluster.parent_name,
        table if table is not None else cluster.table(),
        user="tester",
        **options,
    )
    return result


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    yield cluster
    cluster.close()


def child(status, name):
    return next(c for c in status.children if c.name == name)


def node_names(client):
    return sorted(n["name"] for n in client.replication_info()["nodes"])


def job_count(client):
    return len(client.get("jobs")["jobIds"])


# --------------------------------------------------------------------------- status


def test_status_of_a_synchronized_cluster_is_healthy(three):
    assert sync(three).status == 0
    status = cluster_status(three.parent.url, "parent", factory(), max_age_hours=1)
    assert status.code == 0
    assert status.parent.name == "Parent"  # the server's spelling
    top = status.repositories[0]
    assert (top.name, top.role, top.reachable) == ("Parent", "parent", True)
    assert sorted((r.name, r.role, r.reachable) for r in status.children) == [
        ("AZ", "child", True),
        ("Ohio", "child", True),
    ]
    assert status.parent.id_block == [1, 1_000_000]
    blocks = [c.id_block for c in status.children]
    assert blocks[0] != blocks[1] and all(b and b[1] == 1_000_000 for b in blocks)
    assert [(c.to_parent, c.to_child, c.conflicts) for c in status.children] == [
        (0, 0, 0),
        (0, 0, 0),
    ]
    assert all(c.last_sync and not c.full_exchange for c in status.children)
    assert status.warnings == []
    text = "\n".join(status.lines())
    assert "Ohio" in text and "AZ" in text and "healthy" in text
    data = status.to_dict()
    assert data["status"] == 0 and data["parent"]["name"] == "Parent"
    assert [c["waiting_to_parent"] for c in data["children"]] == [0, 0]
    assert data["children"][0]["last_sync"].endswith("Z")


def test_status_counts_what_waits_in_each_direction_and_writes_no_export(three):
    sync(three)
    create_job(three.client("Ohio"), "from Ohio")
    create_job(three.client("Parent"), "from Parent")
    before = {name: generation(three.client(name)) for name in three.names}
    exports = list((three.parent.store.path.parent).glob("**/*.jxl"))
    status = cluster_status(three.parent.url, "Parent", factory())
    ohio, az = child(status, "Ohio"), child(status, "AZ")
    assert (ohio.to_parent, ohio.to_child) == (2, 2)  # a job and its creation record
    assert (az.to_parent, az.to_child) == (0, 2)
    assert {name: generation(three.client(name)) for name in three.names} == before
    assert list((three.parent.store.path.parent).glob("**/*.jxl")) == exports


def test_status_max_age_and_an_unreachable_child(three):
    sync(three)
    assert cluster_status(three.parent.url, "Parent", factory(), max_age_hours=1).code == 0
    stale = cluster_status(three.parent.url, "Parent", factory(), max_age_hours=1e-9)
    assert stale.code == 1
    assert any("longer ago than --max-age" in w for w in stale.warnings)
    three.children[1].stop()
    down = cluster_status(three.parent.url, "Parent", factory())
    assert down.code == 1
    az = child(down, "AZ")
    assert not az.reachable and az.error
    assert any(w.startswith("AZ is unreachable") for w in down.warnings)


def test_status_with_the_parent_down_is_nothing_readable(three):
    sync(three)
    url = three.parent.url
    three.parent.stop()
    status = cluster_status(url, "Parent", factory())
    assert status.code == 2 and status.parent.error
    assert "nothing readable" in status.lines()[-1]


def test_status_warns_of_a_second_parent_and_a_stale_row(three):
    sync(three)
    ohio, az = three.client("Ohio"), three.client("AZ")
    ohio.update_node("Elsewhere", server_url="http://127.0.0.1:9/x/WMServer", is_parent=True)
    az.delete_node("Parent")
    status = cluster_status(three.parent.url, "Parent", factory())
    assert any("Ohio has two parents: Parent and Elsewhere" in w for w in status.warnings)
    assert any("AZ no longer names Parent as its parent" in w for w in status.warnings)
    assert child(status, "AZ").full_exchange  # the pair's watermarks are gone


def test_a_never_synchronized_child_counts_everything(three):
    sync(three)
    status = cluster_status(three.parent.url, "Parent", factory(), max_age_hours=100)
    assert status.code == 0
    three.client("Parent").reset_node("Ohio")
    status = cluster_status(three.parent.url, "Parent", factory())
    assert child(status, "Ohio").full_exchange
    assert child(status, "Ohio").to_child > 0


# --------------------------------------------------------------------------- conflicts


def make_conflict(cluster):
    sync(cluster)
    job_id = create_job(cluster.client("Parent"), "contested")
    sync(cluster)
    cluster.client("Ohio").post(
        f"jobs/{job_id}/update", properties='{"description": "Ohio", "priority": 3}'
    )
    cluster.client("AZ").post(f"jobs/{job_id}/update", properties='{"description": "AZ"}')
    assert sync(cluster).status == 0
    return job_id


def test_conflicts_list_names_the_job_and_the_fields_that_differ(three):
    job_id = make_conflict(three)
    entries = conflict_entries(three.client("Parent"))
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.number, entry.kind, entry.job_id, entry.name) == (1, "Job", job_id, "contested")
    assert (entry.winner_origin, entry.loser_origin) == ("AZ", "Ohio")
    assert "description" in entry.fields and "priority" in entry.fields
    assert entry.line().startswith(f"#1  Job  job {job_id}  contested")
    data = entry.to_dict()
    assert data["loser_content"]["description"] == "Ohio" and data["time"].endswith("Z")


class _OldLog:
    """A replica whose conflict log predates ``id``, ``name`` and ``fields``."""

    def __init__(self, client):
        self.client = client
        self.display_url = client.display_url

    def conflicts(self):
        entries = self.client.conflicts()
        for entry in entries:
            for key in ("id", "name", "fields"):
                entry.pop(key, None)
        return entries

    def get(self, path, **params):
        return self.client.get(path, **params)

    def post(self, path, **params):
        return self.client.post(path, **params)


def test_conflicts_work_out_job_id_and_fields_when_the_log_lacks_them(three):
    job_id = make_conflict(three)
    entry = conflict_entries(_OldLog(three.client("Parent")))[0]
    assert (entry.job_id, entry.name) == (job_id, "contested")
    assert sorted(entry.fields) == ["description", "priority"]


def test_restore_makes_the_loser_current_and_a_sync_carries_it_everywhere(three):
    job_id = make_conflict(three)
    parent = three.client("Parent")
    assert parent.get(f"jobs/{job_id}")["description"] == "AZ"
    done = restore(parent, "1")
    assert "fields: description, priority" in done.done
    assert parent.get(f"jobs/{job_id}")["description"] == "Ohio"
    assert sync(three).status == 0
    view = assert_converged(three)
    job = next(j for j in view["jobs"].values() if j[1] == "contested")
    assert (job[2], job[3]) == ("Ohio", 3)
    assert "restored" not in " ".join(done.not_restored)


def test_restore_of_a_missing_conflict_changes_nothing(three):
    make_conflict(three)
    parent = three.client("Parent")
    before = generation(parent)
    with pytest.raises(SyncRefused, match="no conflict #7"):
        restore(parent, "7")
    with pytest.raises(SyncRefused, match="no conflict of the element"):
        restore(parent, "not-a-guid")
    assert generation(parent) == before


# --------------------------------------------------------------------------- clear


def test_clear_one_child_then_it_joins_another_cluster(three, emulator):
    sync(three)
    jobs = {name: job_count(three.client(name)) for name in three.names}
    other = emulator("Other")
    ohio_row = f"Ohio true {three.children[0].url} ''"
    refused = synchronize(other.url, "Other", ohio_row, user="tester")
    assert refused.status == 1 and "already belongs to the cluster of Parent" in (
        refused.children[0].error
    )

    result = clear_cluster(three.parent.url, "Parent", factory(), child="ohio")
    assert result.status == 0
    assert [(r.repository, r.removed) for r in result.repositories] == [
        ("Parent", ["Ohio"]),
        ("Ohio", ["Parent"]),
    ]
    assert node_names(three.client("Parent")) == ["AZ", "Parent"]
    assert node_names(three.client("Ohio")) == ["Ohio"]  # its own row: its id block
    assert {name: job_count(three.client(name)) for name in three.names} == jobs

    joined = synchronize(other.url, "Other", ohio_row, user="tester")
    assert joined.status == 0, joined.children[0].error
    assert sync(three, f"AZ true {three.children[1].url} ''").status == 0


def test_clear_the_whole_cluster_then_the_parent_joins_another(three, emulator):
    sync(three)
    result = clear_cluster(three.parent.url, "Parent", factory())
    assert result.status == 0
    assert sorted(r.repository for r in result.repositories) == ["AZ", "Ohio", "Parent"]
    assert node_names(three.client("Parent")) == ["Parent"]
    assert node_names(three.client("Ohio")) == ["Ohio"]
    assert node_names(three.client("AZ")) == ["AZ"]
    other = emulator("Other")
    joined = synchronize(other.url, "Other", f"Parent true {three.parent.url} ''", user="tester")
    assert joined.status == 0, joined.children[0].error


def test_clear_lists_an_unreachable_child_and_clear_url_finishes_it(three, emulator):
    sync(three)
    three.children[1].stop()
    result = clear_cluster(three.parent.url, "Parent", factory())
    assert result.status == 1
    az = next(r for r in result.repositories if r.repository == "AZ")
    assert "wmsync clear --url" in az.error
    assert node_names(three.client("Parent")) == ["Parent"]
    back = emulator("AZ")  # the same database, served again
    client = WMServerClient(back.url, user="tester")
    assert node_names(client) == ["AZ", "Parent"]
    done = clear_repository(back.url, factory())
    assert done.repositories[0].removed == ["Parent"]
    assert node_names(client) == ["AZ"]
    client.close()


def test_clear_of_an_unknown_child_changes_nothing(three):
    sync(three)
    before = {name: node_names(three.client(name)) for name in three.names}
    with pytest.raises(SyncRefused, match="'Texas' is not a child of Parent"):
        clear_cluster(three.parent.url, "Parent", factory(), child="Texas")
    with pytest.raises(SyncRefused, match="is the repository 'Parent', not 'Ohio'"):
        clear_cluster(three.parent.url, "Ohio", factory())
    assert {name: node_names(three.client(name)) for name in three.names} == before


def test_clear_on_a_stock_server_is_refused_by_name(emulator):
    stock = emulator("Stock", stock=True)
    with pytest.raises(MissingExtensions, match="lacks the WorkflowSync replication"):
        clear_repository(stock.url, factory())


def test_nodes_delete_is_an_extension_only(emulator):
    extended, stock = emulator("Ext"), emulator("Stock", stock=True)
    with WMServerClient(extended.url, user="tester") as client:
        client.update_node("Gone", server_url="http://127.0.0.1:9/x/WMServer")
        client.delete_node("Gone")
        assert node_names(client) == []
        with pytest.raises(NotFound):
            client.delete_node("Gone")
    with WMServerClient(stock.url, user="tester") as client, pytest.raises(NotFound):
        client.delete_node("Anything")


# --------------------------------------------------------------------------- replicate


def test_replicate_a_child_with_jobs_of_its_own(three, emulator):
    sync(three)
    create_job(three.client("Parent"), "at the parent")
    texas = emulator("Texas")
    with WMServerClient(texas.url, user="tester") as client:
        create_job(client, "texas one")
        create_job(client, "texas two")
        result = replicate(three.parent.url, "parent", texas.url, "texas", factory())
        assert result.status == 0, result.error
        child = result.sync.children[0]
        assert child.name == "Texas" and child.sent >= 4 and child.received >= 2
        assert result.id_block and result.id_block[1] == 1_000_000
        assert result.id_block[0] > 1_000_000
        text = "\n".join(result.lines())
        assert "Texas joined the cluster of Parent" in text and "job id block" in text
        assert job_id_by_name(three.client("Parent"), "texas two")
        assert job_id_by_name(client, "at the parent")
    status = cluster_status(three.parent.url, "Parent", factory())
    assert sorted(c.name for c in status.children) == ["AZ", "Ohio", "Texas"]


def test_replicate_refuses_a_child_of_another_cluster_and_changes_nothing(three, emulator):
    sync(three)
    other = emulator("Other")
    before = node_names(WMServerClient(other.url, user="tester"))
    result = replicate(other.url, "Other", three.children[0].url, "Ohio", factory())
    assert result.status == -1
    assert "already belongs to the cluster of Parent" in result.error
    assert result.lines()[0].startswith("not replicated, nothing changed")
    assert node_names(WMServerClient(other.url, user="tester")) == before
    wrong = replicate(three.parent.url, "Parent", three.children[0].url, "Texas", factory())
    assert wrong.status == -1 and "is the repository 'Ohio', not 'Texas'" in wrong.error


def test_replicate_to_an_unreachable_child(three):
    result = replicate(
        three.parent.url, "Parent", "http://127.0.0.1:9/x/WMServer", "Gone", factory()
    )
    assert result.status == -1 and "Gone" in result.error
    assert node_names(three.client("Parent")) == []


def test_status_json_is_serializable(three):
    sync(three)
    json.dumps(cluster_status(three.parent.url, "Parent", factory()).to_dict())


def test_no_token_in_status_clear_or_replicate_output(emulator):
    secret = "PLANTEDsecretTOKEN0123456789"
    parent, ohio, texas = (emulator(n, token=secret) for n in ("Parent", "Ohio", "Texas"))
    made = default_replica_factory(user="tester", token=secret)
    planted = ohio.url + "?token=" + secret  # a token written into a row's URL
    assert (
        synchronize(
            parent.url, "Parent", f"Ohio true {planted} ''", user="tester", token=secret
        ).status
        == 0
    )
    status = cluster_status(parent.url + "?token=" + secret, "Parent", made)
    assert status.code == 0
    joined = replicate(parent.url, "Parent", texas.url + "?token=" + secret, "Texas", made)
    assert joined.status == 0, joined.error
    cleared = clear_cluster(parent.url, "Parent", made)
    texts = [
        json.dumps(status.to_dict()),
        "\n".join(status.lines()),
        json.dumps(joined.to_dict()),
        "\n".join(joined.lines()),
        json.dumps(cleared.to_dict()),
        "\n".join(cleared.lines()),
    ]
    assert all(secret not in text for text in texts)


class _StockLike:
    """A replica without the extensions' node operations (as a stock replica is)."""

    display_url = "http://stock/arcgis/rest/services/S/WMServer"

    def replication_info(self):
        return {"repository": "S", "nodes": [{"name": "P", "isParent": True}]}

    def close(self):
        pass


def test_clear_names_a_replica_without_delete_node():
    with pytest.raises(SyncRefused, match="without the WorkflowSync extensions"):
        clear_repository("http://stock/arcgis/rest/services/S/WMServer", lambda url: _StockLike())


def test_restore_of_a_losing_delete_deletes_the_job_everywhere(three):
    sync(three)
    job_id = create_job(three.client("Parent"), "deleted or edited")
    sync(three)
    three.client("Ohio").post(f"jobs/{job_id}/delete")
    three.client("AZ").post(f"jobs/{job_id}/update", properties='{"description": "kept"}')
    assert sync(three).status == 0
    parent = three.client("Parent")
    assert parent.get(f"jobs/{job_id}")["description"] == "kept"  # the later edit won
    entry = next(e for e in conflict_entries(parent) if e.kind == "Job")
    assert entry.loser_deleted and entry.loser_origin == "Ohio"
    done = restore(parent, str(entry.number))
    assert done.done == [f"job {job_id} deleted (the losing version was a delete)"]
    assert sync(three).status == 0
    for name in three.names:
        assert job_id not in three.client(name).get("jobs")["jobIds"]
