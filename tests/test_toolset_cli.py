"""``wmsync status | conflicts | clear | replicate`` as real processes against emulators
on loopback: help, one real run each, exit codes, and bad input refused in one line
with nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cluster import create_job, generation, make_cluster

from wmsync.engine import synchronize

TOOLSET = ["status", "conflicts", "clear", "replicate"]
DEAD = "http://127.0.0.1:9/arcgis/rest/services/Gone/WMServer"


def run_cli(*args: str, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "wmsync", *args, "--user", "tester"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def three(emulator):
    cluster = make_cluster(emulator, "Parent", "Ohio", "AZ")
    result = synchronize(cluster.parent.url, "Parent", cluster.table(), user="tester")
    assert result.status == 0
    yield cluster
    cluster.close()


def node_names(client):
    return sorted(n["name"] for n in client.replication_info()["nodes"])


def one_line_error(done, *words):
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("command", TOOLSET)
def test_help_of_each_toolset_command(command):
    done = subprocess.run(
        [sys.executable, "-m", "wmsync", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert f"usage: wmsync {command}" in done.stdout
    top = subprocess.run(
        [sys.executable, "-m", "wmsync", "--help"], capture_output=True, text=True, timeout=60
    )
    assert command in top.stdout


def test_status_text_json_and_max_age_exit_codes(three):
    parent = ["--parent-url", three.parent.url, "--parent-name", "Parent"]
    text = run_cli("status", *parent)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].split()[:4] == ["repository", "role", "id", "block"]
    assert "Cluster of Parent: 2 children, healthy" in text.stdout
    data = json.loads(run_cli("status", *parent, "--json").stdout)
    assert data["status"] == 0
    assert sorted(c["name"] for c in data["children"]) == ["AZ", "Ohio"]
    assert run_cli("status", *parent, "--max-age", "24").returncode == 0
    old = run_cli("status", *parent, "--max-age", "0.0000001")
    assert old.returncode == 1 and "longer ago than --max-age" in old.stdout
    three.children[0].stop()
    down = run_cli("status", *parent, "--max-age", "24")
    assert down.returncode == 1 and "Ohio is unreachable" in down.stdout
    three.parent.stop()
    nothing = run_cli("status", *parent)
    assert nothing.returncode == 2 and "nothing readable" in nothing.stdout


def test_conflicts_list_and_restore(three):
    job_id = create_job(three.client("Parent"), "contested")
    synchronize(three.parent.url, "Parent", three.table(), user="tester")
    three.client("Ohio").post(f"jobs/{job_id}/update", properties='{"description": "O"}')
    three.client("AZ").post(f"jobs/{job_id}/update", properties='{"description": "A"}')
    synchronize(three.parent.url, "Parent", three.table(), user="tester")
    url = ["--url", three.parent.url]
    listed = run_cli("conflicts", *url)
    assert listed.returncode == 0, listed.stderr
    assert f"#1  Job  job {job_id}  contested" in listed.stdout
    assert "winner AZ  loser Ohio  fields: description" in listed.stdout
    data = json.loads(run_cli("conflicts", *url, "--json").stdout)
    assert [(c["number"], c["id"], c["fields"]) for c in data["conflicts"]] == [
        (1, job_id, ["description"])
    ]
    missing = run_cli("conflicts", *url, "--restore", "9")
    assert missing.returncode == 2
    one_line_error(missing, "no conflict #9")
    restored = run_cli("conflicts", *url, "--restore", "1")
    assert restored.returncode == 0, restored.stderr
    assert "Conflict #1" in restored.stdout
    assert three.client("Parent").get(f"jobs/{job_id}")["description"] == "O"
    synchronize(three.parent.url, "Parent", three.table(), user="tester")
    assert three.client("AZ").get(f"jobs/{job_id}")["description"] == "O"


def test_clear_one_child_and_bad_input(three):
    parent = ["--parent-url", three.parent.url, "--parent-name", "Parent"]
    before = [node_names(three.client(n)) for n in three.names]
    unknown = run_cli("clear", *parent, "--child", "Texas")
    assert unknown.returncode == 2
    one_line_error(unknown, "'Texas' is not a child of Parent", "nothing was changed")
    bad_url = run_cli("clear", "--parent-url", "ftp://hq/WMServer", "--parent-name", "P")
    assert bad_url.returncode == 2
    one_line_error(bad_url, "--parent-url", "not an http(s) URL")
    dead = run_cli("clear", "--parent-url", DEAD, "--parent-name", "Gone")
    assert dead.returncode == 2
    one_line_error(dead, "127.0.0.1:9")
    assert [node_names(three.client(n)) for n in three.names] == before
    done = run_cli("clear", *parent, "--child", "AZ")
    assert done.returncode == 0, done.stderr
    assert "Parent: removed the rows of AZ" in done.stdout
    assert node_names(three.client("AZ")) == ["AZ"]
    assert node_names(three.client("Parent")) == ["Ohio", "Parent"]


def test_replicate_and_its_bad_input(three, emulator):
    texas = emulator("Texas")
    args = [
        "--parent-url",
        three.parent.url,
        "--parent-name",
        "Parent",
        "--child-url",
        texas.url,
        "--child-name",
        "Texas",
    ]
    wrong = run_cli("replicate", *args[:6], "--child-name", "Dallas")
    assert wrong.returncode == 2
    one_line_error(wrong, "is the repository 'Texas', not 'Dallas'", "nothing changed")
    dead = run_cli("replicate", *args[:4], "--child-url", DEAD, "--child-name", "Gone")
    assert dead.returncode == 2
    one_line_error(dead, "Gone", "127.0.0.1:9", "nothing changed")
    bad = run_cli("replicate", *args[:4], "--child-url", "hq/WMServer", "--child-name", "X")
    assert bad.returncode == 2
    one_line_error(bad, "--child-url")
    assert node_names(three.client("Parent")) == ["AZ", "Ohio", "Parent"]
    before = generation(three.client("Parent"))
    done = run_cli("replicate", *args, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == 0 and data["id_block"][1] == 1_000_000
    assert data["children"][0]["name"] == "Texas"
    assert "Texas" in node_names(three.client("Parent"))
    assert generation(three.client("Parent")) >= before


def test_conflicts_bad_input_is_one_line():
    dead = run_cli("conflicts", "--url", DEAD)
    assert dead.returncode == 2
    one_line_error(dead, "127.0.0.1:9")
    bad = run_cli("conflicts", "--url", "file:///etc/passwd")
    assert bad.returncode == 2
    one_line_error(bad, "--url", "not an http(s) URL")
    zero = run_cli("status", "--parent-url", DEAD, "--parent-name", "P", "--max-age", "0")
    assert zero.returncode == 2
    one_line_error(zero, "--max-age")
