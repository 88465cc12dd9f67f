"""The version is stated once (wmsync/__init__.py); packaging and a drop-in copy agree."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import wmsync

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.floor


def test_pyproject_states_no_version_of_its_own():
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project
    assert "\nversion" not in project
    assert 'version = {attr = "wmsync.__version__"}' in text


def test_installed_metadata_matches_the_package():
    assert importlib.metadata.version("wmsync") == wmsync.__version__


def test_a_drop_in_toolbox_copy_knows_its_version(tmp_path):
    from wmsync.install import install_toolbox

    folder = os.path.dirname(install_toolbox(os.fspath(tmp_path / "WorkflowSync")))
    assert not [n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info"))]
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import wmsync; print(wmsync.__version__, wmsync.__file__.startswith(sys.argv[1]))",
            folder,
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=60,
        check=False,
    )
    assert out.stdout.split() == [wmsync.__version__, "True"], out.stderr
