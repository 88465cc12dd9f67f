"""``replication/import`` with ``peer`` and ``peerSeq`` (docs/protocol.md; docs/design.md §4,
"Restores and rebuilds"): the receiving side records the sender's sequence number in its
node row of the sender, in the import's own transaction, or not at all."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import pytest

from wmsync import synchronize
from wmsync.client import WMServerClient
from wmsync.emulator.app import Fault
from wmsync.errors import BadRequest
from wmsync.progress import SyncListener

USER = "tester"


def exported(client: WMServerClient, path: Path) -> Path:
    info = client.export(0)
    with open(path, "wb") as dest:
        client.download(info.jxl_url, dest)
    return path


def registered(emulator: Callable[..., Any], tmp_path: Path) -> Tuple[Any, WMServerClient, Path]:
    """A synchronized pair (node rows on both sides), Ohio's whole export, and a client
    of the parent."""
    parent, ohio = emulator("Parent"), emulator("Ohio")
    o_client = WMServerClient(ohio.url, user=USER)
    o_client.post("jobs/create", jobTypeId=1, name="sent")
    assert synchronize(parent.url, "Parent", f"Ohio true {ohio.url} ''", user=USER).status == 0
    o_client.post("jobs/create", jobTypeId=1, name="later")
    return parent, WMServerClient(parent.url, user=USER), exported(o_client, tmp_path / "o.jxl")


def peer_seq(parent: Any) -> Optional[int]:
    node = parent.store.node("Ohio")
    assert node is not None
    return node.peer_seq  # type: ignore[no-any-return]


def test_the_sequence_is_recorded_with_the_import_only_moving_forward(
    emulator: Callable[..., Any], tmp_path: Path
) -> None:
    parent, client, document = registered(emulator, tmp_path)
    before = peer_seq(parent) or 0
    answer = client.import_document(document, peer="Ohio", peer_seq=before + 40)
    assert answer["added"] >= 1
    assert peer_seq(parent) == before + 40
    client.import_document(document, peer="Ohio", peer_seq=before + 1)  # an older one
    assert peer_seq(parent) == before + 40
    client.import_document(document, peer="OHIO", peer_seq=before + 41)  # case aside
    assert peer_seq(parent) == before + 41
    generation = parent.store.generation()
    client.import_document(document)  # without them: nothing recorded, nothing moved
    assert (peer_seq(parent), parent.store.generation()) == (before + 41, generation)


@pytest.mark.parametrize(
    "peer, seq, message",
    [
        ("Texas", 99, "Unknown peer"),  # no node row of it here
        ("Ohio", None, "peer and peerSeq go together"),
        (None, 99, "peer and peerSeq go together"),
        ("Ohio", 0, "peerSeq must be 1 or more"),
    ],
)
def test_a_bad_peer_mark_is_refused_and_changes_nothing(
    emulator: Callable[..., Any],
    tmp_path: Path,
    peer: Optional[str],
    seq: Optional[int],
    message: str,
) -> None:
    parent, client, document = registered(emulator, tmp_path)
    before = (parent.store.fingerprint(), parent.store.generation(), parent.store.nodes())
    with pytest.raises(BadRequest) as refused:
        # The client checks nothing itself: the server's refusal is what is tested.
        client._json(
            "POST",
            "replication/import",
            params={"merge": True, "peer": peer, "peerSeq": seq},
            upload=str(document),
            headers={"Content-Type": "application/xml"},
            transfer=True,
        )
    assert message in refused.value.message
    assert (parent.store.fingerprint(), parent.store.generation(), parent.store.nodes()) == before


def test_an_invalid_document_records_no_sequence(
    emulator: Callable[..., Any], tmp_path: Path
) -> None:
    parent, client, document = registered(emulator, tmp_path)
    before = peer_seq(parent)
    broken = tmp_path / "broken.jxl"
    broken.write_bytes(document.read_bytes()[:-40])  # cut inside its last element
    with pytest.raises(BadRequest):
        client.import_document(broken, peer="Ohio", peer_seq=(before or 0) + 40)
    assert peer_seq(parent) == before


def test_every_pull_and_push_leaves_each_side_confirming_what_the_other_holds(
    emulator: Callable[..., Any],
) -> None:
    """After runs that move data both ways, what each side recorded of the other (its
    ``peerSeq``) never exceeds what the other holds (``syncSeq``): no restore is found,
    and the pair stays trusted (no full exchange)."""
    parent, ohio = emulator("Parent"), emulator("Ohio")
    table = f"Ohio true {ohio.url} ''"
    clients = [WMServerClient(s.url, user=USER) for s in (parent, ohio)]
    warnings: list = []

    class Warnings(SyncListener):
        def warning(self, message: str) -> None:
            warnings.append(message)

    for number in range(3):
        for side, client in zip(("hq", "ohio"), clients):
            client.post("jobs/create", jobTypeId=1, name=f"{side} {number}")
        result = synchronize(parent.url, "Parent", table, user=USER, listener=Warnings())
        assert result.status == 0
        assert not result.children[0].full_exchange or number == 0
    p_row, c_row = parent.store.node("Ohio"), ohio.store.node("Parent")
    assert p_row.peer_seq <= c_row.sync_seq and c_row.peer_seq <= p_row.sync_seq
    assert not [w for w in warnings if "went back in time" in w]


def test_a_run_that_read_the_parent_before_a_rival_push_finds_no_restore(
    emulator: Callable[..., Any],
) -> None:
    """A run reads the parent's rows first and a child's later; a rival run whose push
    (sequence bump, import, renewal) lands in between makes the child confirm a number
    newer than the parent's row as first read. That is not a restore of the parent."""
    parent, ohio = emulator("Parent"), emulator("Ohio")
    table = f"Ohio true {ohio.url} ''"
    assert synchronize(parent.url, "Parent", table, user=USER).status == 0
    WMServerClient(parent.url, user=USER).post("jobs/create", jobTypeId=1, name="pushed")
    slow = Fault("replication/info", "latency", seconds=3.0, times=1)
    ohio.app.faults.append(slow)
    warnings: list = []

    class Warnings(SyncListener):
        def warning(self, message: str) -> None:
            warnings.append(message)

    first: list = []
    waiting = threading.Thread(
        target=lambda: first.append(
            synchronize(parent.url, "Parent", table, user=USER, listener=Warnings())
        )
    )
    waiting.start()
    try:
        deadline = time.monotonic() + 10
        while slow.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slow.hits == 1  # the first run has read the parent and waits on Ohio
        assert synchronize(parent.url, "Parent", table, user=USER).status == 0  # the rival
    finally:
        slow.release()
        waiting.join(30)
    assert first and first[0].status == 0
    assert not [w for w in warnings if "went back in time" in w], warnings
