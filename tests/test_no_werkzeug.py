"""Neither the toolbox nor ``wmsync sync`` needs werkzeug (it is not in ArcGIS Pro).

A subprocess makes werkzeug unimportable before anything else is imported, loads
``WorkflowSync.pyt`` through the fake arcpy, imports ``wmsync.cli`` and runs a real
sync through the command line against emulators started here, in the normal
environment. Afterwards neither werkzeug nor any ``wmsync.emulator`` module is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

TESTS = Path(__file__).resolve().parent
PYT = TESTS.parent / "WorkflowSync.pyt"

DRIVER = textwrap.dedent(
    """
    import json
    import sys

    tests, pyt, report, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


    class NoWerkzeug:
        def find_spec(self, name, path=None, target=None):
            if name == "werkzeug" or name.startswith("werkzeug."):
                raise ModuleNotFoundError("werkzeug is not in ArcGIS Pro", name=name)
            return None


    sys.meta_path.insert(0, NoWerkzeug())
    try:
        import werkzeug  # noqa: F401
    except ModuleNotFoundError:
        blocked = True
    else:
        blocked = False

    sys.path.insert(0, tests)
    import fake_arcpy

    arcpy = fake_arcpy.new_arcpy()
    sys.modules["arcpy"] = arcpy
    toolbox = arcpy.ImportToolbox(pyt, "wmx")

    import wmsync.cli

    code = wmsync.cli.main(argv + ["--report", report])
    print(json.dumps({
        "blocked": blocked,
        "code": code,
        "tool": hasattr(toolbox, "SynchronizeJobData"),
        "modules": sorted(sys.modules),
        "wmsync": sys.modules["wmsync"].__file__,
    }))
    """
)


def test_werkzeug_is_there_to_be_blocked():
    assert importlib.util.find_spec("werkzeug") is not None


def test_toolbox_and_cli_sync_without_werkzeug(tmp_path, emulator):
    parent = emulator("Parent")
    ohio = emulator("Ohio")
    az = emulator("AZ")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    report = tmp_path / "report.json"
    table = f"Ohio true {ohio.url} '';AZ true {az.url} ''"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMSYNC_", "PYTHON"))}
    proc = subprocess.run(
        [
            sys.executable,
            str(driver),
            str(TESTS),
            str(PYT),
            str(report),
            "sync",
            "--parent-url",
            parent.url,
            "--parent-name",
            "Parent",
            "--children",
            table,
            "--user",
            "wmx_admin",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"] is True
    assert out["tool"] is True
    assert out["code"] == 0, proc.stdout + proc.stderr
    assert out["wmsync"] == str(TESTS.parent / "wmsync" / "__init__.py")
    modules = out["modules"]
    assert "wmsync.engine" in modules and "wmsync.client" in modules
    assert not [m for m in modules if m == "werkzeug" or m.startswith("werkzeug.")]
    assert not [m for m in modules if m.startswith("wmsync.emulator")]

    result = json.loads(report.read_text(encoding="utf-8"))
    assert result["status"] == 0
    states = {child["name"]: child["state"] for child in result["children"]}
    assert states == {"Ohio": "synchronized", "AZ": "synchronized"}
    # Each child's row carries its new Last Synchronized time.
    rows = parse_children(
        [[c["name"], "true", c["url"], c["last_sync_time"]] for c in result["children"]]
    )
    assert all(r.last_sync is not None for r in rows)
