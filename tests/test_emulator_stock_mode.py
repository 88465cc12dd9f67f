"""Stock mode of the emulator (``docs/protocol.md``, "Stock mode of the emulator"):
only Esri's documented operations, answered as a stock Workflow Manager server does,
and the administrator's configuration from ``--config FILE``.

Everything over HTTP on loopback against real SQLite; the command line as a subprocess.
"""

from __future__ import annotations

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

from wmsync.emulator.routes import extended_routes, stock_routes
from wmsync.emulator.site import parse_site_config

ROOT_DIR = Path(__file__).resolve().parents[1]
IDENTITY_KEYS = {"guid", "modified", "origin"}
#: The extended server's own operations ([ours]): none of them answers in stock mode.
OURS = [
    "/replication/export",
    "/replication/nodes/update",
    "/replication/nodes/reset",
    "/replication/conflicts",
    "/replication/exports/0123456789abcdef0123456789abcdef.jxl",
    "/jobTypes/create",
    "/jobTypes/1/update",
    "/community/users/create",
    "/community/users/admin/update",
    "/community/groups/create",
    "/community/groups/1/update",
]


def call(url, path="", **params):
    params.setdefault("f", "json")
    answer = requests.post(url + path, data=params, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def keys_in(payload):
    """Every dictionary key anywhere in a JSON answer."""
    if isinstance(payload, dict):
        found = set(payload)
        for value in payload.values():
            found |= keys_in(value)
        return found
    if isinstance(payload, list):
        return set().union(*(keys_in(v) for v in payload)) if payload else set()
    return set()


@pytest.fixture
def stock(emulator):
    return emulator("Stock", stock=True)


def new_job(url, user="admin", **params):
    return call(url, "/jobs/create", user=user, jobTypeId="1", **params)["jobIds"][0]


# ------------------------------------------------------------------ every route


def test_every_route_answers_without_identity_keys_and_ours_are_refused(stock):
    """Walks every rule of the extended routing table against a stock server: Esri's
    operations answer (no ``guid``, ``modified``, ``origin`` anywhere, nor the
    repository ``name``), the others answer as an unknown resource does."""
    stock_paths = {rule.rule for rule in stock_routes().url_map.iter_rules()}
    every_path = {rule.rule for rule in extended_routes().url_map.iter_rules()}
    assert stock_paths < every_path
    unknown = call(stock.url, "/no/such/thing", user="admin")
    assert unknown["error"]["code"] == 404
    answered = 0
    for rule in sorted(every_path):
        job_id = new_job(stock.url)
        hold_id = call(stock.url, f"/jobs/{job_id}/holds/create", user="admin", type="1")["holdId"]
        if rule.endswith("/reopen"):
            call(stock.url, "/jobs/close", user="admin", jobs=str(job_id))
        path = (
            rule.replace("<int:job_id>", str(job_id))
            .replace("<int:hold_id>", str(hold_id))
            .replace("<int:type_id>", "1")
            .replace("<int:group_id>", "1")
            .replace("<user_name>", "admin")
            .replace("<export_file>", "0123456789abcdef0123456789abcdef.jxl")
        )
        answer = call(
            stock.url,
            path,
            user="admin",
            jobTypeId="1",
            jobs=str(job_id),
            type="1",
            comments="c",
            notes="n",
            assignedType="1",
            assignedTo="admin",
            properties=json.dumps({"name": "renamed"}),
            name="x",
            userName="x",
            jxlURL=stock.url + "/x.jxl",
        )
        if rule not in stock_paths:
            # as an unknown resource ("/community/users/create" reads as the user "create")
            assert answer["error"]["code"] == 404, (rule, answer)
            continue
        if rule == "/replication/import":
            assert answer["error"]["code"] == 400, answer  # refuses any document
            continue
        assert "error" not in answer, (rule, answer)
        assert not keys_in(answer) & IDENTITY_KEYS, (rule, answer)
        assert "guid" not in json.dumps(answer), rule
        if rule == "/":
            assert "name" not in answer  # the repository name is ours
        answered += 1
    assert answered == len(stock_paths) - 1
    for path in OURS:
        assert call(stock.url, path, user="admin", name="x")["error"]["code"] == 404, path


def test_root_and_replication_info_are_esri_only(stock):
    root = call(stock.url)
    assert "name" not in root and not keys_in(root) & IDENTITY_KEYS
    assert root["currentVersion"] and root["jobTypes"] == [{"id": 1, "name": "Default"}]
    assert call(stock.url, "/replication/info", user="admin") == {"nodes": []}
    job_id = new_job(stock.url)
    answers = [
        call(stock.url, p)
        for p in (
            "/jobs",
            f"/jobs/{job_id}",
            "/jobTypes/1",
            "/community/users",
            "/community/groups",
        )
    ]
    assert not keys_in(answers) & IDENTITY_KEYS


def test_import_refuses_documents_in_every_form(stock, emulator, tmp_path):
    source = emulator("Ohio")
    info = call(source.url, "/replication/export", user="sync")
    document = requests.get(info["jxlURL"], timeout=10).content
    raw = requests.post(
        stock.url + "/replication/import",
        params={"user": "sync", "f": "json"},
        data=document,
        headers={"Content-Type": "application/xml"},
        timeout=10,
    ).json()
    assert raw["error"]["code"] == 400
    assert (
        call(stock.url, "/replication/import", user="sync", jxlURL=info["jxlURL"])["error"]["code"]
        == 400
    )
    assert call(stock.url, "/jobs") == {"jobIds": []}


# ------------------------------------------------------------------ ids


def test_create_honours_id_and_refuses_a_taken_one(stock):
    assert new_job(stock.url, id="42") == 42
    taken = call(stock.url, "/jobs/create", user="admin", jobTypeId="1", id="42")
    assert taken["error"]["code"] == 409 and "42" in taken["error"]["message"]
    assert call(stock.url, "/jobs") == {"jobIds": [42]}
    two = call(stock.url, "/jobs/create", user="admin", jobTypeId="1", id="7", numJobs="2")
    assert two["error"]["code"] == 400


def test_job_id_start_value_sets_where_new_ids_start(stock):
    assert new_job(stock.url) == 1
    answer = call(
        stock.url,
        "/updateConfigProperties",
        user="admin",
        properties=json.dumps({"JOB_ID_START_VALUE": "5000"}),
    )
    assert answer == {"success": True}
    assert [new_job(stock.url), new_job(stock.url)] == [5000, 5001]
    assert new_job(stock.url, id="3") == 3  # an explicit id still goes where it is told
    assert new_job(stock.url) == 5002
    assert call(stock.url)["configProperties"] == {"JOB_ID_START_VALUE": "5000"}
    assert call(stock.url, "/replication/info", user="admin") == {"nodes": []}
    flat = call(stock.url, "/updateConfigProperties", user="admin", JOB_ID_START_VALUE="9000")
    assert flat == {"success": True} and new_job(stock.url) == 9000
    bad = call(stock.url, "/updateConfigProperties", user="admin", JOB_ID_START_VALUE="-1")
    assert bad["error"]["code"] == 400 and "JOB_ID_START_VALUE" in bad["error"]["message"]
    assert call(stock.url, "/updateConfigProperties")["error"]["code"] == 400  # no user


def test_update_leaves_what_esri_says_the_server_sets(stock):
    job_id = new_job(stock.url)
    before = call(stock.url, f"/jobs/{job_id}")
    properties = {"stage": 5, "endDate": 1, "startedDate": 2, "priority": 4}
    assert call(
        stock.url, f"/jobs/{job_id}/update", user="admin", properties=json.dumps(properties)
    ) == {"success": True}
    after = call(stock.url, f"/jobs/{job_id}")
    assert after["priority"] == 4
    assert [after[k] for k in ("stage", "endDate", "startedDate")] == [
        before[k] for k in ("stage", "endDate", "startedDate")
    ]


# ------------------------------------------------------------------ side effects


def test_changes_log_activity_with_server_time_and_calling_user(stock):
    before = int(time.time() * 1000)
    job_id = new_job(stock.url, user="alice")
    steps = [
        ("bob", f"/jobs/{job_id}/update", {"properties": json.dumps({"priority": 3})}),
        ("carol", "/jobs/close", {"jobs": str(job_id)}),
        ("dave", "/jobs/reopen", {"jobs": str(job_id)}),
        ("erin", f"/jobs/{job_id}/holds/create", {"type": "1", "comments": "wait"}),
    ]
    for user, path, params in steps:
        assert "error" not in call(stock.url, path, user=user, **params)
    hold_id = call(stock.url, f"/jobs/{job_id}/holds")["holds"][0]["id"]
    assert call(
        stock.url, f"/jobs/{job_id}/holds/{hold_id}/release", user="frank", comments="go"
    ) == {"success": True}
    after = int(time.time() * 1000)
    activity = call(stock.url, f"/jobs/{job_id}/activity")["activity"]
    assert [a["user"] for a in activity] == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert all(before <= a["date"] <= after for a in activity)
    assert len({a["type"] for a in activity}) == 6  # create, update, close, reopen, hold, release
    hold = call(stock.url, f"/jobs/{job_id}/holds")["holds"][0]
    assert hold["heldBy"] == "erin" and before <= hold["holdDate"] <= after
    assert hold["releasedBy"] == "frank" and before <= hold["releaseDate"] <= after
    logged = call(
        stock.url,
        f"/jobs/{job_id}/activity/logAction",
        user="gina",
        type="1",
        comments="hello",
        date="0",
    )
    assert logged == {"success": True}
    last = call(stock.url, f"/jobs/{job_id}/activity")["activity"][-1]
    assert last["user"] == "gina" and last["message"] == "hello" and last["date"] >= after


# ------------------------------------------------------------------ --config


SITE = {
    "jobTypes": [{"name": "Edit Data", "description": "Edits"}],
    "users": [{"userName": "DOM|jdoe", "fullName": "Jane Doe"}],
    "groups": [{"name": "Editors", "users": ["DOM|jdoe"]}],
}


def test_config_is_applied_at_every_start_adding_only_what_is_missing(emulator):
    first = emulator("Site", stock=True, site=parse_site_config(SITE))
    root = call(first.url)
    assert [t["name"] for t in root["jobTypes"]] == ["Default", "Edit Data"]
    users = {u["userName"]: u["fullName"] for u in call(first.url, "/community/users")["users"]}
    assert users["DOM\\jdoe"] == "Jane Doe"
    groups = {g["name"]: g["users"] for g in call(first.url, "/community/groups")["groups"]}
    assert groups["Editors"] == ["DOM\\jdoe"]
    generation = first.store.generation()
    first.stop()

    again = emulator("Site", stock=True, site=parse_site_config(SITE))  # restart
    assert again.store.generation() == generation  # nothing added twice, nothing changed
    again.stop()

    changed = {
        "jobTypes": [{"name": "Edit Data", "description": "changed"}, {"name": "QA"}],
        "users": [],
        "groups": [],
    }
    third = emulator("Site", stock=True, site=parse_site_config(changed))
    types = {t["name"]: t["id"] for t in call(third.url)["jobTypes"]}
    assert set(types) == {"Default", "Edit Data", "QA"}
    assert call(third.url, f"/jobTypes/{types['Edit Data']}")["description"] == "Edits"
    assert "DOM\\jdoe" in {u["userName"] for u in call(third.url, "/community/users")["users"]}


def test_config_works_without_stock_too(emulator):
    server = emulator("Plain", site=parse_site_config({"jobTypes": [{"name": "Survey"}]}))
    assert [t["name"] for t in call(server.url)["jobTypes"]] == ["Default", "Survey"]
    assert call(server.url)["name"] == "Plain"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ([], "JSON object"),
        ({"jobtypes": []}, "unknown key 'jobtypes'"),
        ({"jobTypes": [{"description": "x"}]}, "jobTypes[0]: 'name'"),
        ({"users": [{"userName": ""}]}, "users[0]: 'userName'"),
        ({"groups": [{"name": "G", "users": "admin"}]}, "groups[0]: 'users'"),
    ],
)
def test_a_bad_config_is_refused_naming_the_item(payload, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_site_config(payload, "site.json")


# ------------------------------------------------------------------ the command line


def _env():
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["PYTHONPATH"] = str(ROOT_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _serve(tmp_path, *options):
    return [sys.executable, "-m", "wmsync", "serve", "--port", "0", *options]


def test_serve_stock_with_config_as_a_process(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(SITE), encoding="utf-8")
    command = _serve(
        tmp_path,
        "--repository",
        "Proc",
        "--db",
        str(tmp_path / "p.sqlite"),
        "--stock",
        "--config",
        str(site),
    )
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path
    ) as proc:
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            assert ready, "no URL line within 15 s"
            url = proc.stdout.readline().decode().strip()
            root = call(url)
            assert "name" not in root
            assert [t["name"] for t in root["jobTypes"]] == ["Default", "Edit Data"]
            assert call(url, "/replication/export", user="u")["error"]["code"] == 404
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("entry", [["-m", "wmsync", "serve"], ["-m", "wmsync.emulator"]])
def test_serve_on_another_repositorys_database_says_so_in_one_line(tmp_path, emulator, entry):
    other = emulator("Ohio")
    other.stop()
    command = [
        sys.executable,
        *entry,
        "--repository",
        "Parent",
        "--db",
        str(other.db_path),
        "--port",
        "0",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Ohio" in lines[0] and "Parent" in lines[0], done.stderr


def test_serve_with_a_broken_config_file_says_so_in_one_line(tmp_path):
    site = tmp_path / "site.json"
    site.write_text("{not json", encoding="utf-8")
    done = subprocess.run(
        _serve(
            tmp_path, "--repository", "P", "--db", str(tmp_path / "p.sqlite"), "--config", str(site)
        ),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "site.json" in lines[0] and "JSON" in lines[0], done.stderr


def test_serve_and_python_dash_m_take_the_same_options():
    def options(entry):
        done = subprocess.run(
            [sys.executable, *entry, "--help"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=30,
        )
        assert done.returncode == 0
        return {word.rstrip(",") for word in done.stdout.split() if word.startswith("--")}

    served = options(["-m", "wmsync", "serve"])
    assert served == options(["-m", "wmsync.emulator"])
    assert {"--stock", "--config", "--token-file", "--no-gzip", "--clock-offset-ms"} <= served


def test_each_routing_table_is_built_once_per_process(tmp_path):
    """Compiling werkzeug's rules costs more than creating a repository: every app of a
    kind shares one table."""
    from wmsync.emulator.app import EmulatorConfig, create_app

    apps = [
        create_app(
            EmulatorConfig(repository=f"R{n}", db_path=str(tmp_path / f"{n}.db"), stock=n % 2 == 0)
        )
        for n in range(4)
    ]
    tables = [app.routes for app in apps]
    assert tables[0] is tables[2] is stock_routes()
    assert tables[1] is tables[3] is extended_routes()
