"""``wmsync install-toolbox DEST``: the drop-in folder a user copies into ArcGIS Pro.

The last test is the one that matters: the folder is loaded through the fake arcpy in a
Python that has only the standard library, requests, lxml (and their dependencies) and
the fake arcpy on its path; not the repository, not the installed wmsync, and werkzeug
cannot be imported. It runs a real sync against emulators started here.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wmsync import cli
from wmsync.errors import WMSyncError
from wmsync.install import TOOLBOX_FILE, install_toolbox, toolbox_sources
from wmsync.valuetable import parse_children

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
FAKE_ARCPY = Path(__file__).resolve().parent / "fake_arcpy"
METADATA_FILES = sorted(
    [
        "WorkflowSync.SynchronizeJobData.pyt.xml",
        "WorkflowSync.pyt.xml",
        "WorkflowSync.ExportJobData.pyt.xml",
        "WorkflowSync.ImportJobData.pyt.xml",
        "WorkflowSync.CreateJobDataReplica.pyt.xml",
        "WorkflowSync.ClearJobReplicationInfo.pyt.xml",
        "WorkflowSync.ClusterStatus.pyt.xml",
    ]
)
#: What the drop-in folder may rely on: what ArcGIS Pro ships (docs/design.md §9).
PRO_DISTRIBUTIONS = ["requests", "urllib3", "lxml", "idna", "certifi", "charset-normalizer"]


def listing(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- the folder


def test_folder_holds_toolbox_metadata_and_package_without_emulator(tmp_path):
    dest = tmp_path / "WorkflowSync"
    pyt = install_toolbox(str(dest))
    assert pyt == str(dest / TOOLBOX_FILE)
    assert (dest / TOOLBOX_FILE).read_bytes() == (ROOT / TOOLBOX_FILE).read_bytes()
    # ArcGIS Pro reads the item descriptions beside the .pyt, not from metadata/.
    for name in METADATA_FILES:
        assert (dest / name).read_bytes() == (ROOT / "metadata" / name).read_bytes()
    package = dest / "wmsync"
    source = ROOT / "wmsync"
    shipped = {
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.suffix in (".py", ".xsd") and "emulator" not in p.relative_to(source).parts
    }
    shipped -= {"demo.py"}
    assert {"jxl.xsd", "exchange/__init__.py", "exchange/reader.py"} <= shipped
    folders = {p.rsplit("/", 1)[0] for p in shipped if "/" in p}  # subpackages
    assert {p.relative_to(package).as_posix() for p in package.rglob("*")} == (
        shipped | folders | {"py.typed"}
    )
    assert not (package / "emulator").exists()
    assert not list(dest.rglob("__pycache__"))
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no staging left
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+werkzeug", text, re.M), path.name


def test_sources_list_pyt_then_metadata():
    names = [os.path.basename(p) for p in toolbox_sources()]
    assert names == [TOOLBOX_FILE, *METADATA_FILES]


def test_existing_toolbox_needs_overwrite(tmp_path):
    dest = tmp_path / "tb"
    install_toolbox(str(dest))
    before = listing(dest)
    with pytest.raises(WMSyncError, match="--force"):
        install_toolbox(str(dest))
    assert listing(dest) == before
    # A folder with only the .pyt (the package deleted by hand) is a toolbox too.
    only_pyt = tmp_path / "only"
    only_pyt.mkdir()
    (only_pyt / TOOLBOX_FILE).write_text("# mine\n")
    with pytest.raises(WMSyncError):
        install_toolbox(str(only_pyt))
    assert (only_pyt / TOOLBOX_FILE).read_text() == "# mine\n"


def test_update_replaces_the_package_whole_and_stamps_new_times(tmp_path):
    dest = tmp_path / "tb"
    install_toolbox(str(dest))
    stale = dest / "wmsync" / "stale_module.py"
    stale.write_text("GONE = True\n")
    old = time.time() - 3600
    os.utime(dest / "wmsync" / "engine.py", (old, old))
    started = time.time()
    install_toolbox(str(dest), overwrite=True)
    assert not stale.exists()
    # The .pyt re-imports wmsync on a toolbox refresh when a file is newer than its import.
    assert (dest / "wmsync" / "engine.py").stat().st_mtime >= started - 2
    assert listing(dest) == listing(tmp_path / "tb")
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_failed_update_keeps_the_working_copy(tmp_path, monkeypatch):
    dest = tmp_path / "tb"
    install_toolbox(str(dest))
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.basename(dst) == TOOLBOX_FILE:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        install_toolbox(str(dest), overwrite=True)
    monkeypatch.undo()
    assert (dest / TOOLBOX_FILE).read_bytes() == before[dest / TOOLBOX_FILE]
    assert (dest / "wmsync" / "__init__.py").is_file()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_refuses_the_source_checkout_and_the_package(tmp_path):
    for target in (ROOT, ROOT / "wmsync", ROOT / "wmsync" / "sub"):
        with pytest.raises(WMSyncError, match="source checkout"):
            install_toolbox(str(target), overwrite=True)
    assert (ROOT / "wmsync" / "engine.py").is_file()
    assert not (ROOT / "wmsync" / "sub").exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(WMSyncError, match="not a folder"):
        install_toolbox(str(a_file))


def test_checkout_without_pyt_is_explained(tmp_path):
    with pytest.raises(WMSyncError, match="source checkout"):
        install_toolbox(str(tmp_path / "tb"), root=str(tmp_path))


def test_cli_install_and_force(tmp_path, capsys):
    dest = tmp_path / "Tools" / "WorkflowSync"
    assert cli.main(["install-toolbox", str(dest)]) == 0
    out = capsys.readouterr().out
    assert str(dest / TOOLBOX_FILE) in out and "Add Toolbox" in out
    assert cli.main(["install-toolbox", str(dest)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["install-toolbox", str(dest), "--force"]) == 0


# --------------------------------------------------------------------------- drop-in run


def _pro_like_site(folder: Path) -> Path:
    """A site folder holding only what Pro ships that we use: links to this venv's copies.

    Every top-level entry of each distribution is linked (charset-normalizer has a
    compiled top-level helper module beside its package).
    """
    site = folder / "site"
    site.mkdir()
    for name in PRO_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        tops = set()
        for entry in dist.files or []:
            first = entry.parts[0]
            if first in ("..", "__pycache__") or first.endswith((".dist-info", ".pth")):
                continue
            tops.add(first)
        assert tops, name
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source, target_is_directory=source.is_dir())
    fake = folder / "fake"
    fake.mkdir()
    (fake / "fake_arcpy").symlink_to(FAKE_ARCPY, target_is_directory=True)
    return site


DROP_IN_DRIVER = textwrap.dedent(
    """
    import json
    import sys

    site, fake, pyt, parent_url, table = sys.argv[1:6]
    sys.path[:0] = [site, fake]


    class NoWerkzeug:
        def find_spec(self, name, path=None, target=None):
            if name == "werkzeug" or name.startswith("werkzeug."):
                raise ModuleNotFoundError("werkzeug is not in ArcGIS Pro", name=name)
            return None


    sys.meta_path.insert(0, NoWerkzeug())

    import fake_arcpy

    arcpy = fake_arcpy.new_arcpy()
    sys.modules["arcpy"] = arcpy
    arcpy.ImportToolbox(pyt, "wmx")
    result = arcpy.SynchronizeJobData_wmx(parent_url, "Parent", table)
    import lxml.etree
    import requests
    import urllib3

    print(json.dumps({
        "status": result.getOutput(0),
        "last": result.getOutput(1),
        "messages": arcpy.GetMessages(),
        "files": {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())},
        "path": sys.path,
        "versions": [requests.__version__, urllib3.__version__, lxml.etree.__version__],
    }))
    """
)


def test_drop_in_folder_runs_with_only_what_pro_ships(tmp_path, emulator):
    dest = tmp_path / "WorkflowSync"
    install_toolbox(str(dest))
    site = _pro_like_site(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(DROP_IN_DRIVER)
    parent = emulator("Parent")
    ohio = emulator("Ohio")
    az = emulator("AZ")
    table = f"Ohio true {ohio.url} '';AZ true {az.url} 2011-08-08 12:00"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "WMSYNC_USER": "wmx_admin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(driver),
            str(site),
            str(tmp_path / "fake"),
            str(dest / TOOLBOX_FILE),
            parent.url,
            table,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "0", out["messages"]
    rows = parse_children(out["last"])
    assert [(r.name, r.connected, r.url) for r in rows] == [
        ("Ohio", True, ohio.url),
        ("AZ", True, az.url),
    ]
    assert all(r.last_sync is not None and r.last_sync.year > 2011 for r in rows)

    files = out["files"]
    assert "werkzeug" not in files
    assert not [n for n in files if n.startswith("wmsync.emulator")]
    assert files["wmsync"] == str(dest / "wmsync" / "__init__.py")
    # Nothing came from the repository or the venv, except through the Pro-like links.
    allowed = (str(site), str(tmp_path / "fake"), str(dest))
    repo = str(ROOT)
    for name, path in files.items():
        if path is None or path.startswith(allowed):
            continue
        assert not path.startswith(repo), (name, path)
        assert "site-packages" not in path, (name, path)
    assert not [p for p in out["path"] if "site-packages" in p]
