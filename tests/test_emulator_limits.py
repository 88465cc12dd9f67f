"""The REST API's text limit (:data:`wmsync.emulator.limits.MAX_TEXT_CHARS`): text
fields up to it are stored, longer ones refused with 400 naming the field, and nothing
changes."""

from __future__ import annotations

import json

import requests

from wmsync.emulator.limits import MAX_TEXT_CHARS

TOO_LONG = "x" * (MAX_TEXT_CHARS + 1)


def post(url, path, **params):
    params.setdefault("f", "json")
    return requests.post(url + path, data=params, timeout=30).json()


def refused(answer, field):
    assert answer["error"]["code"] == 400, answer
    assert field in answer["error"]["message"] and answer["error"]["details"] == [field]
    return True


def test_the_limit_is_documented_and_far_below_libxml2s_text_node_limit():
    assert MAX_TEXT_CHARS == 1_000_000
    assert MAX_TEXT_CHARS * 4 < 10_000_000  # even at 4 bytes a character in UTF-8


def test_text_fields_beyond_the_limit_are_refused_naming_the_field(emulator):
    server = emulator("Parent")
    url = server.url
    job = post(url, "/jobs/create", user="bob", jobTypeId="1")["jobIds"][0]
    before = server.store.generation()
    assert refused(post(url, "/jobs/create", user="bob", jobTypeId="1", name=TOO_LONG), "name")
    assert refused(
        post(url, f"/jobs/{job}/update", user="bob", description=TOO_LONG), "description"
    )
    properties = json.dumps({"description": TOO_LONG, "name": "fine"})
    assert refused(
        post(url, f"/jobs/{job}/update", user="bob", properties=properties), "description"
    )
    assert refused(post(url, f"/jobs/{job}/notes/update", user="bob", notes=TOO_LONG), "notes")
    assert refused(
        post(url, f"/jobs/{job}/holds/create", user="bob", type="1", comments=TOO_LONG), "comments"
    )
    assert refused(
        post(url, f"/jobs/{job}/activity/logAction", user="bob", type="1", comments=TOO_LONG),
        "comments",
    )
    assert refused(post(url, "/jobTypes/create", user="bob", name=TOO_LONG), "name")
    assert server.store.generation() == before  # nothing changed
    assert (
        requests.get(f"{url}/jobs/{job}", params={"f": "json"}, timeout=10).json()["name"] != "fine"
    )


def test_text_up_to_the_limit_is_stored_whole(emulator):
    server = emulator("Parent")
    job = post(server.url, "/jobs/create", user="bob", jobTypeId="1")["jobIds"][0]
    longest = "é" * MAX_TEXT_CHARS
    assert post(server.url, f"/jobs/{job}/notes/update", user="bob", notes=longest) == {
        "success": True
    }
    notes = requests.get(f"{server.url}/jobs/{job}/notes", params={"f": "json"}, timeout=30)
    assert notes.json()["notes"] == longest
