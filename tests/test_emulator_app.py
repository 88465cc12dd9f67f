"""The emulator over HTTP: Esri's shapes as the JS client reads them, errors, tokens,
replication, and the process entry point."""

from __future__ import annotations

import gzip
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from wmsync.emulator.app import Fault

ROOT_DIR = Path(__file__).resolve().parents[1]


def ts() -> str:
    return str(int(time.time() * 1000))


def get(url, path="", **params):
    """A call as Esri's JS client makes it: GET, f=json, a cache buster."""
    params.setdefault("f", "json")
    params.setdefault("_ts", ts())
    answer = requests.get(url + path, params=params, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def post(url, path="", headers=None, **params):
    params.setdefault("f", "json")
    answer = requests.post(url + path, data=params, headers=headers, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def error_code(payload):
    assert "error" in payload, payload
    return payload["error"]["code"]


@pytest.fixture
def parent(emulator):
    return emulator("Parent")


# ------------------------------------------------------------------ service root


def test_root_has_esri_keys(parent):
    root = get(parent.url)
    assert root["name"] == "Parent" and isinstance(root["currentVersion"], float)
    assert root["jobTypes"] == [{"id": 1, "name": "Default"}]
    assert [p["value"] for p in root["jobPriorities"]] == [0, 1, 2, 3, 4, 5]
    assert any(a["name"] == "Comment" and "description" in a for a in root["activityTypes"])
    for key in ("jobStatuses", "holdTypes", "dataWorkspaces"):
        assert isinstance(root[key], list)
    assert root["configProperties"] == {}
    assert set(root["publicQueries"]) == {"id", "name", "queries", "containers"}


def test_pjson_and_html_answer_json(parent):
    pretty = requests.get(parent.url, params={"f": "pjson"}, timeout=10)
    assert pretty.text.startswith("{\n") and pretty.json()["name"] == "Parent"
    assert requests.get(parent.url, timeout=10).json()["name"] == "Parent"


def test_case_insensitive_paths_and_service_name(parent):
    upper = parent.url.replace(
        "/arcgis/rest/services/Parent/WMServer", "/ARCGIS/Rest/services/parent/wmserver"
    )
    assert get(upper)["name"] == "Parent"
    assert get(upper, "/JOBS") == {"jobIds": []}
    other = parent.url.replace("/Parent/", "/Other/")
    assert error_code(get(other)) == 404
    assert error_code(get(parent.url, "/no/such/thing")) == 404
    outside = parent.url.split("/arcgis")[0] + "/elsewhere"
    assert error_code(requests.get(outside, timeout=10).json()) == 404


# ------------------------------------------------------------------ jobs as the JS client uses them


def test_job_lifecycle_as_the_js_client(parent):
    url = parent.url
    created = get(
        url,
        "/jobs/create",
        user="ACME|bob",
        jobTypeId="1",
        numJobs="2",
        priority="2",
        ownedBy="ACME|bob",
        assignedType="1",
        assignedTo="ACME|ann",
        description="survey",
        startDate="1700000000000",
        clearDueDate="true",
    )
    assert created == {"jobIds": [1, 2]}
    assert get(url, "/jobs") == {"jobIds": [1, 2]}
    job = get(url, "/jobs/1")
    root = get(url)
    assert job["jobTypeId"] in [t["id"] for t in root["jobTypes"]]
    assert job["status"] in [s["id"] for s in root["jobStatuses"]]
    assert job["ownedBy"] == "ACME\\bob" and job["assignedTo"] == "ACME\\ann"
    assert job["createdBy"] == "ACME\\bob"
    assert (job["priority"], job["stage"], job["assignedType"]) == (2, 1, 1)
    assert job["startDate"] == 1700000000000 and job["dueDate"] is None
    assert job["dataWorkspaceId"] == "" and job["parentVersion"] == ""
    assert job["versionExists"] is False and job["versionInfo"] == []
    assert job["guid"] and job["origin"] == "Parent" and job["modified"] > 0
    assert job["parentJobId"] is None and job["description"] == "survey"

    # update as JobUpdateParameters: properties JSON with nulls, user, jobId, a string number
    properties = {
        "jobId": 1,
        "name": "renamed",
        "priority": "3",
        "user": "ACME|bob",
        "clearStartDate": True,
        "percent": None,
        "parentJobId": None,
        "description": None,
        "status": None,
    }
    assert get(
        url,
        "/jobs/1/update",
        user="ACME|bob",
        properties=json.dumps(properties),
        jobId="1",
        name="renamed",
    ) == {"success": True}
    job = get(url, "/jobs/1")
    assert (job["name"], job["priority"], job["startDate"]) == ("renamed", 3, None)
    assert job["description"] == "survey" and job["percentageComplete"] == 0

    # flat params by form POST; a parent job by id
    assert post(url, "/jobs/2/update", user="bob", parentJobId="1", percent="50") == {
        "success": True
    }
    job2 = get(url, "/jobs/2")
    assert job2["parentJobId"] == 1 and job2["percentageComplete"] == 50

    assert get(url, "/jobs/close", user="bob", jobs="1,2") == {"success": True}
    assert get(url, "/jobs/1")["stage"] == 5 and get(url, "/jobs/1")["endDate"]
    assert error_code(get(url, "/jobs/1/close", user="bob")) == 409
    assert get(url, "/jobs/reopen", user="bob", jobs="1") == {"success": True}
    assert get(url, "/jobs/1")["stage"] == 2
    assert get(
        url, "/jobs/assign", user="bob", jobs="1,2", assignedType="2", assignedTo="Administrators"
    ) == {"success": True}
    assert get(url, "/jobs/2")["assignedTo"] == "Administrators"
    assert get(url, "/jobs/1/unassign", user="bob")["success"]
    assert get(url, "/jobs/1")["assignedTo"] == ""

    assert get(url, "/jobs/delete", user="bob", jobs="2", deleteHistory="true")["success"]
    assert error_code(get(url, "/jobs/2")) == 404
    assert get(url, "/jobs") == {"jobIds": [1]}
    assert error_code(get(url, "/jobs/delete", user="bob", jobs="1,2")) == 404
    assert get(url, "/jobs") == {"jobIds": [1]}  # the failed bulk delete changed nothing

    messages = [a["message"] for a in get(url, "/jobs/1/activity")["activity"]]
    assert messages[0] == "Job 1 created" and any("closed" in m for m in messages)


def test_explicit_id_and_numjobs_rules(parent):
    url = parent.url
    assert get(url, "/jobs/create", user="bob", jobTypeId="1", id="500") == {"jobIds": [500]}
    assert error_code(get(url, "/jobs/create", user="bob", jobTypeId="1", id="500")) == 409
    assert (
        error_code(get(url, "/jobs/create", user="bob", jobTypeId="1", id="7", numJobs="2")) == 400
    )
    assert error_code(get(url, "/jobs/create", user="bob", jobTypeId="9")) == 400
    assert get(url, "/jobs/create", user="bob", jobTypeId="1") == {"jobIds": [501]}


def test_holds_notes_and_activity(parent):
    url = parent.url
    get(url, "/jobs/create", user="bob", jobTypeId="1")
    hold = get(url, "/jobs/1/holds/create", user="bob", type="1", comments="waiting")
    assert hold == {"holdId": 1}
    holds = get(url, "/jobs/1/holds")["holds"]
    assert holds[0]["type"] == 1 and holds[0]["releaseDate"] is None
    assert holds[0]["holdComments"] == "waiting" and holds[0]["heldBy"] == "bob"
    assert get(url, "/jobs/1/holds/1/release", user="ann", comments="ok") == {"success": True}
    released = get(url, "/jobs/1/holds")["holds"][0]
    assert released["releasedBy"] == "ann" and released["releaseDate"]
    assert error_code(get(url, "/jobs/1/holds/1/release", user="ann")) == 409
    assert error_code(get(url, "/jobs/1/holds/create", user="bob", type="99")) == 400

    assert get(url, "/jobs/1/notes") == {"notes": ""}
    assert post(url, "/jobs/1/notes/update", user="bob", notes="line 1\nline 2")["success"]
    assert get(url, "/jobs/1/notes") == {"notes": "line 1\nline 2"}

    comment = next(a["id"] for a in get(url)["activityTypes"] if a["name"] == "Comment")
    assert get(url, "/jobs/1/activity/logAction", user="bob", type=str(comment), comments="hello")[
        "success"
    ]
    assert get(url, "/jobs/1/activity/logAction", user="bob", type="-1")["success"]
    activity = get(url, "/jobs/1/activity")["activity"]
    assert {"date", "type", "user", "message"} <= set(activity[0])
    assert any(a["message"] == "hello" and a["type"] == comment for a in activity)


def test_configuration_changes(parent):
    url = parent.url
    created = get(
        url,
        "/jobTypes/create",
        user="bob",
        name="Edit Data",
        defaultPriority="2",
        defaultJobName="Edit [JOB:ID]",
    )
    assert created["id"] == 2
    assert {"id": 2, "name": "Edit Data"} in get(url)["jobTypes"]
    detail = get(url, "/jobTypes/2")
    assert detail["defaultPriority"] == 2 and detail["defaultStartDate"] is None
    assert error_code(get(url, "/jobTypes/create", user="bob", name="Edit Data")) == 409
    assert get(url, "/jobTypes/2/update", user="bob", description="d")["success"]
    assert get(url, "/visibleJobTypes", user="bob")["jobTypes"][1]["description"] == "d"
    jobs = get(url, "/jobs/create", user="bob", jobTypeId="2")["jobIds"]
    job = get(url, f"/jobs/{jobs[0]}")
    assert job["name"] == f"Edit {jobs[0]}" and job["priority"] == 2

    assert (
        get(url, "/community/users/create", user="admin", userName="ACME|carl", fullName="Carl")[
            "id"
        ]
        == "ACME\\carl"
    )
    assert (
        error_code(get(url, "/community/users/create", user="admin", userName="ACME|carl")) == 409
    )
    names = [u["userName"] for u in get(url, "/community/users")["users"]]
    assert names == ["ACME\\carl", "admin"]
    group = get(
        url, "/community/groups/create", user="admin", name="Editors", users="ACME|carl,admin"
    )
    carl = get(url, "/community/users/ACME|carl")
    assert carl["fullName"] == "Carl" and carl["userQueries"] == {}
    assert carl["privileges"] and carl["groups"][0]["id"] == group["id"]
    assert get(url, f"/community/groups/{group['id']}")["users"] == ["ACME\\carl", "admin"]
    assert get(url, "/community/users/ACME|carl/update", user="admin", fullName="C.")["success"]
    assert get(url, "/community/users/ACME|carl")["fullName"] == "C."
    assert get(url, f"/community/groups/{group['id']}/update", user="admin", users="admin")[
        "success"
    ]
    groups = get(url, "/community/groups")["groups"]
    assert [g["name"] for g in groups] == ["Administrators", "Editors"]
    assert groups[1]["users"] == ["admin"]
    assert error_code(get(url, "/community/users/nobody")) == 404


# ------------------------------------------------------------------ errors, JSONP, tokens


def test_error_envelope_codes(parent):
    url = parent.url
    missing = get(url, "/jobs/create", jobTypeId="1")
    assert missing["error"]["code"] == 400 and "user" in missing["error"]["message"]
    assert error_code(get(url, "/jobs/create", user="bob", jobTypeId="x")) == 400
    assert error_code(get(url, "/jobs/77")) == 404
    assert error_code(get(url, "/replication/info")) == 400
    bad_json = get(url, "/jobs/create", user="bob", jobTypeId="1")
    assert bad_json == {"jobIds": [1]}
    assert error_code(get(url, "/jobs/1/update", user="bob", properties="{nope")) == 400
    parent.app.faults.append(Fault("^jobs$", "error", times=1))
    envelope = get(url, "/jobs")
    assert envelope["error"]["code"] == 500 and envelope["error"]["details"] == []
    assert get(url, "/jobs") == {"jobIds": [1]}


def test_unexpected_exception_is_500_without_traceback(parent, monkeypatch):
    def broken():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(parent.store, "reading", broken)
    answer = requests.get(parent.url + "/jobs", params={"f": "json"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["error"]["code"] == 500
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_jsonp(parent):
    answer = requests.get(
        parent.url + "/jobs", params={"f": "json", "callback": "dojo.cb1"}, timeout=10
    )
    assert answer.headers["Content-Type"].startswith("application/javascript")
    assert answer.text == 'dojo.cb1({"jobIds": []});'
    error = requests.get(parent.url + "/jobs/9", params={"callback": "cb"}, timeout=10)
    assert error.text.startswith('cb({"error"')
    hostile = requests.get(parent.url, params={"callback": "alert(1)//"}, timeout=10)
    assert hostile.json()["error"]["code"] == 400


def test_token_required(emulator):
    server = emulator("Secure", token="s3cret-token")
    url = server.url
    for answer, code, message in (
        (requests.get(url, params={"f": "json"}, timeout=10), 499, "Token Required"),
        (
            requests.get(url, params={"f": "json", "token": "wrong"}, timeout=10),
            498,
            "Invalid Token",
        ),
    ):
        assert answer.json()["error"]["code"] == code  # as ArcGIS Server answers
        assert answer.json()["error"]["message"] == message
        assert "s3cret" not in answer.text and "wrong" not in answer.text
    header = {"X-Esri-Authorization": "Bearer s3cret-token"}
    assert (
        requests.get(url, params={"f": "json"}, headers=header, timeout=10).json()["name"]
        == "Secure"
    )
    assert get(url, token="s3cret-token")["name"] == "Secure"
    assert post(url, "/jobs/create", user="bob", jobTypeId="1", token="s3cret-token") == {
        "jobIds": [1]
    }
    info = requests.get(
        url + "/replication/export", params={"user": "u"}, headers=header, timeout=10
    ).json()
    assert requests.get(info["jxlURL"], timeout=10).json()["error"]["code"] == 499
    assert requests.get(info["jxlURL"], headers=header, timeout=10).content.startswith(b"<?xml")


# ------------------------------------------------------------------ replication


def test_replication_info_and_nodes(parent):
    url = parent.url
    info = get(url, "/replication/info", user="sync")
    instance = info.pop("instanceId")
    assert isinstance(instance, str) and len(instance) == 32
    assert info == {
        "repository": "Parent",
        "generation": 1,
        "incarnation": "Parent",
        "ownCounter": 0,  # no local edit yet: the defaults have empty vectors
        "extensions": ["wmsync-replication/1"],
        "nodes": [],
    }
    answer = post(
        url,
        "/replication/nodes/update",
        user="sync",
        name="Ohio",
        serverURL="http://o/WMServer",
        isParent="false",
        isConnected="true",
        lastSyncGen="5",
        syncId="abc",
        stampLastSync="true",
    )
    assert answer["success"] and isinstance(answer["lastSync"], int)
    post(
        url,
        "/replication/nodes/update",
        user="sync",
        name="Parent",
        isParent="true",
        isConnected="true",
        jobIdStart="1",
        jobIdBlock="1000",
    )
    nodes = {n["name"]: n for n in get(url, "/replication/info", user="sync")["nodes"]}
    assert nodes["Ohio"]["lastSyncGen"] == 5 and nodes["Ohio"]["syncId"] == "abc"
    assert nodes["Parent"]["isParent"] is True and nodes["Parent"]["jobIdBlock"] == 1000
    assert set(nodes["Ohio"]) == {
        "id",
        "name",
        "description",
        "serverURL",
        "isParent",
        "isConnected",
        "lastSync",
        "lastSyncGen",
        "syncId",
        "jobIdStart",
        "jobIdBlock",
        "peerGen",
        "syncSeq",
        "peerSeq",
        "peerInstance",
        "peerGenSeen",
        "peerCounterSeen",
    }
    assert nodes["Parent"]["jobIdHigh"] is None  # no job in its block yet
    assert post(url, "/replication/nodes/reset", user="sync", name="Ohio") == {"success": True}
    ohio = get(url, "/replication/info", user="sync")["nodes"][0]
    assert ohio["lastSyncGen"] is None and ohio["syncId"] is None
    assert error_code(post(url, "/replication/nodes/reset", user="sync", name="X")) == 404
    assert get(url, "/replication/info", user="sync")["generation"] == 1


def export_doc(server, tmp_path, **params):
    info = get(server.url, "/replication/export", user="sync", **params)
    with requests.get(info["jxlURL"], stream=True, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/xml")
        path = tmp_path / f"{server.repository}-{info['generation']}.jxl"
        with open(path, "wb") as target:
            for chunk in answer.iter_content(65536):
                target.write(chunk)
    return info, path


def import_raw(server, path, gzipped=False, **params):
    body = path.read_bytes()
    headers = {"Content-Type": "application/xml"}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    params.setdefault("f", "json")
    params.setdefault("user", "sync")
    answer = requests.post(
        server.url + "/replication/import", params=params, data=body, headers=headers, timeout=10
    )
    return answer.json()


def test_export_and_import_between_servers(emulator, tmp_path):
    child, parent = emulator("Ohio"), emulator("Parent")
    get(child.url, "/jobs/create", user="bob", jobTypeId="1", numJobs="3")
    info, path = export_doc(child, tmp_path, sinceGen="1")
    assert info["count"] == 6 and info["generation"] == 2  # 3 jobs + 3 activity records
    assert info["jxlURL"].startswith(child.url + "/replication/exports/")
    result = import_raw(parent, path)
    assert (result["added"], result["updated"], result["unchanged"]) == (6, 0, 0)
    assert result["generation"] == 2 and result["conflicts"] == []
    assert result["renumbered"] == [] and result["warnings"] == []
    assert isinstance(result["importTime"], int)
    assert get(parent.url, "/jobs") == {"jobIds": [1, 2, 3]}
    job = get(parent.url, "/jobs/1")
    assert job["origin"] == "Ohio" and job["jobTypeId"] == 1
    again = import_raw(parent, path, gzipped=True)
    assert again["unchanged"] == 6 and again["generation"] == 2

    # echo suppression: what came from Ohio does not go back
    echo, _ = export_doc(parent, tmp_path, sinceGen="1", excludeVia="Ohio")
    assert echo["count"] == 0


def test_import_as_multipart_and_jxl_url(emulator, tmp_path):
    child, parent = emulator("Ohio"), emulator("Parent")
    get(child.url, "/jobs/create", user="bob", jobTypeId="1")
    info, path = export_doc(child, tmp_path, sinceGen="1")
    with open(path, "rb") as handle:
        answer = requests.post(
            parent.url + "/replication/import",
            data={"user": "sync", "f": "json"},
            files={"jxl": ("doc.jxl", handle, "application/xml")},
            timeout=10,
        ).json()
    assert answer["added"] == 2
    third = emulator("AZ")
    # the first export went once downloaded: Esri's way, the server fetches a fresh one
    info = get(child.url, "/replication/export", user="sync", sinceGen="1")
    fetched = post(third.url, "/replication/import", user="sync", jxlURL=info["jxlURL"])
    assert fetched["added"] == 2
    own = get(third.url, "/replication/export", user="sync", sinceGen="0")
    assert (
        post(third.url, "/replication/import", user="sync", jtxURL=own["jxlURL"])["unchanged"] == 5
    )
    remote = post(third.url, "/replication/import", user="sync", jxlURL="http://example.com/x.jxl")
    assert remote["error"]["code"] == 400 and "loopback" in remote["error"]["message"]
    assert (
        error_code(
            post(
                third.url, "/replication/import", user="sync", merge="false", jxlURL=info["jxlURL"]
            )
        )
        == 400
    )


def test_invalid_document_changes_nothing(emulator, tmp_path):
    child, parent = emulator("Ohio"), emulator("Parent")
    get(child.url, "/jobs/create", user="bob", jobTypeId="1", numJobs="3")
    _, path = export_doc(child, tmp_path, sinceGen="1")
    lines = path.read_text("utf-8").splitlines(keepends=True)
    lines[-2] = lines[-2].replace("guid=", "bogus=", 1)
    path.write_text("".join(lines), "utf-8")
    answer = import_raw(parent, path)
    assert answer["error"]["code"] == 400
    assert any(d.startswith("line ") for d in answer["error"]["details"])
    assert get(parent.url, "/jobs") == {"jobIds": []}
    assert get(parent.url, "/replication/info", user="s")["generation"] == 1
    doctype = tmp_path / "evil.jxl"
    doctype.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><JobExchange/>')
    assert import_raw(parent, doctype)["error"]["code"] == 400
    assert error_code(post(parent.url, "/replication/import", user="sync")) == 400


def test_request_size_cap(emulator, tmp_path):
    server = emulator("Small", max_content_length=1000)
    path = tmp_path / "big.jxl"
    path.write_bytes(b"<x>" + b" " * 5000 + b"</x>")
    assert import_raw(server, path)["error"]["code"] == 400


def test_conflicts_endpoint(emulator, tmp_path):
    parent = emulator("Parent")
    child = emulator("Ohio")
    get(parent.url, "/jobs/create", user="bob", jobTypeId="1")
    _, path = export_doc(parent, tmp_path, sinceGen="1")
    import_raw(child, path)
    get(parent.url, "/jobs/1/update", user="bob", name="parent edit")
    get(child.url, "/jobs/1/update", user="bob", name="child edit")
    _, path = export_doc(child, tmp_path, sinceGen="2", excludeVia="Parent")
    result = import_raw(parent, path)
    assert result["conflicts"] and result["conflicts"][0]["kind"] == "Job"
    log = get(parent.url, "/replication/conflicts", user="sync")["conflicts"]
    assert log[0]["loser"]["content"]["name"] in ("parent edit", "child edit")
    assert set(log[0]["winner"]) == {"vv", "modified", "origin"}
    later = get(
        parent.url, "/replication/conflicts", user="sync", sinceGen=str(log[0]["generation"])
    )
    assert later == {"conflicts": []}


# ------------------------------------------------------------------ faults


def test_fault_switches(parent):
    parent.app.faults.append(Fault("^jobs$", "latency", seconds=0.3, times=1))
    start = time.monotonic()
    assert get(parent.url, "/jobs") == {"jobIds": []}
    assert time.monotonic() - start >= 0.3
    parent.app.faults.append(Fault("^jobs$", "http500", times=1))
    assert requests.get(parent.url + "/jobs", timeout=10).status_code == 500
    parent.app.faults.append(Fault("^jobs$", "drop", times=1))
    with pytest.raises(requests.ConnectionError):
        requests.get(parent.url + "/jobs", timeout=10)
    assert get(parent.url, "/jobs") == {"jobIds": []}


def test_restart_keeps_data(emulator, tmp_path):
    first = emulator("Parent")
    get(first.url, "/jobs/create", user="bob", jobTypeId="1")
    first.stop()
    second = emulator("Parent")
    assert get(second.url, "/jobs") == {"jobIds": [1]}


# ------------------------------------------------------------------ the process


def test_python_dash_m_prints_url_first_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["PYTHONPATH"] = str(ROOT_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    command = [
        sys.executable,
        "-m",
        "wmsync.emulator",
        "--repository",
        "Proc",
        "--db",
        str(tmp_path / "proc.sqlite"),
        "--port",
        "0",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    ) as proc:
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            assert ready, "no URL line within 10 s"
            url = proc.stdout.readline().decode().strip()
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/arcgis/rest/services/Proc/WMServer")
            assert get(url)["name"] == "Proc"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_edits_and_imports_serialize(emulator, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    child, parent = emulator("Ohio"), emulator("Parent")
    get(child.url, "/jobs/create", user="bob", jobTypeId="1", numJobs="50")
    _, path = export_doc(child, tmp_path, sinceGen="1")
    post(
        parent.url,
        "/replication/nodes/update",
        user="s",
        name="Parent",
        isParent="true",
        jobIdStart="1000",
        jobIdBlock="1000",
    )

    def create(_):
        return get(parent.url, "/jobs/create", user="bob", jobTypeId="1")["jobIds"][0]

    with ThreadPoolExecutor(8) as pool:
        imports = [pool.submit(import_raw, parent, path) for _ in range(2)]
        ids = list(pool.map(create, range(24)))
        results = [f.result() for f in imports]
    assert len(set(ids)) == 24 and all(1000 <= i < 2000 for i in ids)
    assert sorted(r["added"] for r in results) == [0, 100]  # atomic and idempotent
    assert get(parent.url, "/replication/info", user="s")["generation"] == 1 + 24 + 1
