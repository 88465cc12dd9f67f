"""Export Job Data / Import Job Data between live emulators (docs/design.md §11): a child
joins by file, files carry the acknowledgement, and a bad file changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from cluster import USER, Cluster, assert_converged, create_job, job_id_by_name, make_cluster

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.filesync import FileRefused, export_job_data, import_job_data


def export(server: Any, peer: str, out: Path, **options: Any) -> Any:
    return export_job_data(server.url, peer, str(out), user=USER, **options)


def imp(server: Any, path: Path) -> Any:
    return import_job_data(server.url, str(path), user=USER)


def state(server: Any) -> Tuple[Any, Any, int]:
    """Everything an import could change: elements, node rows, generation."""
    store = server.store
    return store.fingerprint(), [n.to_dict() for n in store.nodes()], store.generation()


@pytest.fixture
def pair(emulator: Any) -> Cluster:
    return make_cluster(emulator, "HQ", "Office")


def join(cluster: Cluster, tmp_path: Path) -> None:
    hq, office = cluster.parent, cluster.children[0]
    first = export(hq, "Office", tmp_path / "join.zip", register_child=True, child_url=office.url)
    assert first.registered
    outcome = imp(office, tmp_path / "join.zip")
    assert outcome.joined and outcome.marks_taken


def test_a_child_joins_by_file_and_both_ways_converge(pair: Cluster, tmp_path: Path) -> None:
    hq, office = pair.parent, pair.children[0]
    create_job(pair.client("HQ"), "made at HQ")
    join(pair, tmp_path)
    create_job(pair.client("Office"), "made at the office")
    rows = {n.name: n for n in office.store.nodes()}
    assert rows["HQ"].is_parent and rows["Office"].job_id_start == 1_000_001
    back = export(office, "HQ", tmp_path / "back.zip")
    assert back.manifest.source_role == "child" and back.manifest.cluster == "HQ"
    imp(hq, tmp_path / "back.zip")
    export(hq, "Office", tmp_path / "again.zip")
    imp(office, tmp_path / "again.zip")
    assert_converged(pair)
    # A job made at the office after joining is numbered from its block.
    new_id = create_job(pair.client("Office"), "second at the office")
    assert new_id >= 1_000_001
    # Marks: each side now acknowledges the other, so the next files are empty.
    only_new = export(office, "HQ", tmp_path / "quiet1.zip")
    assert only_new.manifest.since_gen == back.manifest.generation  # acknowledged
    assert imp(hq, tmp_path / "quiet1.zip").received == only_new.manifest.count > 0
    quiet = export(hq, "Office", tmp_path / "quiet2.zip")
    assert quiet.manifest.count == 0  # the office's job came via the office: no echo
    assert job_id_by_name(pair.client("HQ"), "second at the office") == new_id


def test_repeated_and_older_files_change_nothing(pair: Cluster, tmp_path: Path) -> None:
    hq, office = pair.parent, pair.children[0]
    join(pair, tmp_path)
    create_job(pair.client("HQ"), "one")
    export(hq, "Office", tmp_path / "f1.zip")
    create_job(pair.client("HQ"), "two")
    export(hq, "Office", tmp_path / "f2.zip")
    assert imp(office, tmp_path / "f2.zip").received >= 2  # unacknowledged: sent again
    before = state(office)
    assert imp(office, tmp_path / "f2.zip").already
    assert imp(office, tmp_path / "f1.zip").already
    assert state(office) == before


def test_a_lost_file_is_sent_again(pair: Cluster, tmp_path: Path) -> None:
    hq, office = pair.parent, pair.children[0]
    join(pair, tmp_path)
    export(office, "HQ", tmp_path / "ack.zip")
    imp(hq, tmp_path / "ack.zip")  # HQ now knows the office holds the join file
    create_job(pair.client("HQ"), "lost")
    export(hq, "Office", tmp_path / "lost.zip")  # never arrives
    create_job(pair.client("HQ"), "arrives")
    export(hq, "Office", tmp_path / "next.zip")
    imp(office, tmp_path / "next.zip")
    names = {
        pair.client("Office").get(f"jobs/{i}")["name"]
        for i in pair.client("Office").get("jobs")["jobIds"]
    }
    assert {"lost", "arrives"} <= names


def test_connected_children_and_a_file_child_converge(emulator: Any, tmp_path: Path) -> None:
    cluster = make_cluster(emulator, "HQ", "Ohio", "Office")
    hq, ohio = cluster.parent, cluster.children[0]
    office = cluster.children[1]
    table = f"Ohio true {ohio.url} ''"
    assert synchronize(hq.url, "HQ", table, user=USER).status == 0
    export(hq, "Office", tmp_path / "join.zip", register_child=True)
    imp(office, tmp_path / "join.zip")
    create_job(cluster.client("Office"), "office job")
    create_job(cluster.client("Ohio"), "ohio job")
    export(office, "HQ", tmp_path / "o.zip")
    imp(hq, tmp_path / "o.zip")
    assert synchronize(hq.url, "HQ", table, user=USER).status == 0
    export(hq, "Office", tmp_path / "h.zip")
    imp(office, tmp_path / "h.zip")
    assert_converged(cluster)


# -- refused files: nothing changed ------------------------------------------------------


@pytest.fixture
def good_file(pair: Cluster, tmp_path: Path) -> Path:
    join(pair, tmp_path)
    create_job(pair.client("HQ"), "payload")
    out = tmp_path / "good.zip"
    export(pair.parent, "Office", out)
    return out


def rewrite(
    src: Path,
    dest: Path,
    manifest: Optional[Dict[str, Any]] = None,
    document: Optional[bytes] = None,
) -> Path:
    with zipfile.ZipFile(src) as archive:
        old_manifest = json.loads(archive.read("manifest.json"))
        old_document = archive.read("document.jxl")
    with zipfile.ZipFile(dest, "w") as archive:
        archive.writestr("manifest.json", json.dumps({**old_manifest, **(manifest or {})}))
        archive.writestr("document.jxl", old_document if document is None else document)
    return dest


def refused(server: Any, path: Path, words: str) -> None:
    before = state(server)
    with pytest.raises(FileRefused) as caught:
        imp(server, path)
    assert words in str(caught.value)
    assert state(server) == before


def test_a_tampered_document_is_refused(pair: Cluster, good_file: Path, tmp_path: Path):
    with zipfile.ZipFile(good_file) as archive:
        text = archive.read("document.jxl")
    assert b"payload" in text
    bad = rewrite(good_file, tmp_path / "bad.zip", document=text.replace(b"payload", b"pwned!!"))
    refused(pair.children[0], bad, "altered")


def test_a_truncated_file_is_refused(pair: Cluster, good_file: Path, tmp_path: Path):
    data = good_file.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        short = tmp_path / f"short{cut}.zip"
        short.write_bytes(data[:cut])
        refused(pair.children[0], short, "damaged or truncated")


def test_a_file_for_another_repository_is_refused(
    pair: Cluster, good_file: Path, emulator: Any
) -> None:
    refused(pair.parent, good_file, "meant for Office, not for HQ")
    other = emulator("Elsewhere")
    refused(other, good_file, "meant for Office, not for Elsewhere")


def test_a_file_from_another_cluster_is_refused(
    pair: Cluster, good_file: Path, tmp_path: Path, emulator: Any
) -> None:
    office = pair.children[0]
    # A parent named "Rival" with a child called Office: Office already has HQ.
    rival = emulator("Rival")
    export(rival, "Office", tmp_path / "rival.zip", register_child=True)
    refused(office, tmp_path / "rival.zip", "already belongs to the cluster of HQ")
    # A manifest claiming another cluster, digest intact.
    refused(
        office,
        rewrite(good_file, tmp_path / "c.zip", {"cluster": "Rival"}),
        "cluster that is not its source's",
    )
    # Another registration of the same child (another id block).
    refused(
        office,
        rewrite(
            good_file,
            tmp_path / "r.zip",
            {"registration": {"child": "Office", "jobIdStart": 7_000_001, "jobIdBlock": 1}},
        ),
        "another registration",
    )
    # A child's file that HQ did not register: the office's file to the rival's HQ.
    back = export(office, "HQ", tmp_path / "back.zip")
    assert back.manifest.cluster == "HQ"
    stranger = emulator("Stranger")
    refused(
        stranger,
        rewrite(tmp_path / "back.zip", tmp_path / "s.zip", {"peer": "Stranger"}),
        "another cluster",
    )


def test_not_a_file_and_an_unknown_peer_are_refused(pair: Cluster, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    refused(pair.children[0], junk, "not a WorkflowSync exchange file")
    before = state(pair.parent)
    with pytest.raises(Exception) as caught:
        export(pair.parent, "Nobody", tmp_path / "x.zip")
    assert "--register-child" in str(caught.value)
    assert state(pair.parent) == before and not (tmp_path / "x.zip").exists()


def test_peer_gen_survives_a_database_made_before_it(tmp_path: Path) -> None:
    """Schema migration: a node table without peerGen gains it, rows kept."""
    import sqlite3

    from wmsync.repository.store import Store

    path = tmp_path / "old.sqlite"
    Store(path, "Old").update_node("Kid", last_sync_gen=5)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE nodes DROP COLUMN peerGen")
    store = Store(path, "Old")
    node = store.update_node("Kid", peer_gen=3)
    assert (node.last_sync_gen, node.peer_gen) == (5, 3)
    assert store.update_node("Kid", peer_gen=2).peer_gen == 3  # only forward


def test_client_sends_peer_gen(pair: Cluster) -> None:
    client = WMServerClient(pair.parent.url, user=USER)
    client.update_node("Office", peer_gen=4)
    client.update_node("Office", peer_gen=2)
    row = next(n for n in client.replication_info()["nodes"] if n["name"] == "Office")
    assert row["peerGen"] == 4
    client.close()


def test_export_into_a_folder_names_the_file(pair: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    outcome = export(pair.parent, "Office", folder, register_child=True)
    assert os.path.dirname(outcome.path) == str(folder)
    assert os.path.basename(outcome.path).startswith("HQ_to_Office_")
    shutil.rmtree(folder)


def test_a_file_from_another_pairing_re_establishes_the_pair(pair: Cluster, tmp_path: Path) -> None:
    """A child whose syncId is not the parent's (restored, or the pair changed meanwhile):
    its content is imported, no mark moves, and the parent's next file is full under a
    new syncId that the child adopts; then marks move again."""
    hq, office = pair.parent, pair.children[0]
    join(pair, tmp_path)
    export(office, "HQ", tmp_path / "ack.zip")
    imp(hq, tmp_path / "ack.zip")
    old = hq.store.node("Office")
    assert old.last_sync_gen and old.sync_id
    office.store.update_node("HQ", sync_id="from-a-backup")
    create_job(pair.client("Office"), "made after the restore")
    export(office, "HQ", tmp_path / "stale.zip")
    stale = imp(hq, tmp_path / "stale.zip")
    assert not stale.marks_taken and stale.received > 0
    assert job_id_by_name(pair.client("HQ"), "made after the restore")
    reset = hq.store.node("Office")
    assert reset.sync_id is None and reset.last_sync_gen is None
    full = export(hq, "Office", tmp_path / "full.zip")
    assert full.manifest.since_gen == 0 and full.manifest.sync_id != old.sync_id
    assert imp(office, tmp_path / "full.zip").marks_taken
    assert office.store.node("HQ").sync_id == full.manifest.sync_id
    export(office, "HQ", tmp_path / "again.zip")
    again = imp(hq, tmp_path / "again.zip")
    assert again.marks_taken
    assert_converged(pair)


def test_an_office_joining_by_file_moves_its_own_jobs_into_its_block(
    pair: Cluster, tmp_path: Path
) -> None:
    """A job has one id everywhere (docs/design.md §4): the office made job 1 before it
    joined, and HQ has a job 1 of its own; joining by file moves the office's into its
    block, on the office, before anything is exchanged."""
    hq, office = pair.parent, pair.children[0]
    create_job(pair.client("HQ"), "HQ's first")
    mine = create_job(pair.client("Office"), "the office's first")
    assert mine < 1_000_001
    first = export(hq, "Office", tmp_path / "join.zip", register_child=True, child_url=office.url)
    assert first.registered
    joined = imp(office, tmp_path / "join.zip")
    assert [(c["from"], c["to"]) for c in joined.ids_changed] == [(mine, 1_000_001)]
    assert f"{mine} -> 1000001" in joined.line()
    export(office, "HQ", tmp_path / "back.zip")
    imp(hq, tmp_path / "back.zip")
    for client in (pair.client("HQ"), pair.client("Office")):
        assert job_id_by_name(client, "the office's first") == 1_000_001
        assert job_id_by_name(client, "HQ's first") == mine  # the same id, HQ's job
    again = imp(office, tmp_path / "join.zip")  # an old file: nothing moves again
    assert not again.ids_changed
