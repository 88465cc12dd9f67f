"""The restore-detection rule (``pairrules.gone_back``) on node rows, without servers."""

from __future__ import annotations

from wmsync.pairrules import gone_back

INFO = {"repository": "Ohio", "generation": 40, "instanceId": "a" * 32}


def test_a_new_pair_or_a_server_without_instance_ids_never_went_back() -> None:
    assert gone_back(INFO, None, None) == []
    assert gone_back({"generation": 1}, {"peerSeq": 9, "peerGenSeen": 99}, None) == []


def test_a_rebuilt_database_is_found_by_its_instance_id() -> None:
    reasons = gone_back(INFO, {"peerInstance": "b" * 32}, None)
    assert reasons and "instance id" in reasons[0]


def test_a_restored_side_holds_a_sequence_number_below_the_confirmed_one() -> None:
    row_of_it = {"peerInstance": INFO["instanceId"], "peerSeq": 5, "syncSeq": 6}
    assert gone_back(INFO, row_of_it, {"syncSeq": 5}) == []
    reasons = gone_back(INFO, row_of_it, {"syncSeq": 3})
    assert reasons == ["it holds syncId number 3 of the pair, 5 was confirmed"]
    assert gone_back(INFO, row_of_it, None)  # restored to before it was registered


def test_an_interrupted_renewal_is_not_a_restore() -> None:
    # Written to this side (6), then the run stopped: the other side confirmed only 5.
    assert gone_back(INFO, {"peerSeq": 5, "syncSeq": 5}, {"syncSeq": 6}) == []
    # Written to the other side first (6), this side never got it: nothing confirmed 6.
    assert gone_back(INFO, {"peerSeq": 4, "syncSeq": 6}, {"syncSeq": 5}) == []


def test_the_generation_is_a_backstop() -> None:
    assert gone_back(INFO, {"peerGenSeen": 40}, {"syncSeq": 0}) == []
    reasons = gone_back(INFO, {"peerGenSeen": 41}, {"syncSeq": 0})
    assert reasons == ["its generation 40 is below the 41 recorded"]


def test_the_highest_own_counter_is_a_backstop_under_the_same_incarnation() -> None:
    info = {**INFO, "incarnation": "Ohio", "ownCounter": 7}
    assert gone_back(info, {"peerCounterSeen": "Ohio:7"}, {"syncSeq": 0}) == []
    reasons = gone_back(info, {"peerCounterSeen": "Ohio:8"}, {"syncSeq": 0})
    assert reasons == ["its highest own counter 7 (Ohio) is below the 8 recorded"]
    # A new incarnation counts from 1 again: a mark of the old one says nothing.
    later = {**INFO, "incarnation": "Ohio~1a2b3c4d", "ownCounter": 1}
    assert gone_back(later, {"peerCounterSeen": "Ohio:8"}, {"syncSeq": 0}) == []
    assert gone_back(info, {"peerCounterSeen": "not a mark"}, None) == []
    assert gone_back({**INFO, "incarnation": "Ohio"}, {"peerCounterSeen": "Ohio:8"}, None) == []
