"""pytest fixtures for toolbox tests: import them into a test module to use them.

Import the functions (``from fake_arcpy.fixtures import arcpy_fixture, toolbox_fixture``);
the fixtures are named ``arcpy`` and ``toolbox``.

``arcpy`` plants a fresh fake in ``sys.modules['arcpy']`` for one test; ``toolbox`` loads
``WorkflowSync.pyt`` from the repository root with it. Both undo everything afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from . import load_toolbox, new_arcpy

ROOT = Path(__file__).resolve().parents[2]
PYT = ROOT / "WorkflowSync.pyt"


@pytest.fixture(name="arcpy")
def arcpy_fixture(monkeypatch):
    """A fresh fake arcpy in ``sys.modules`` (tests/conftest.py's ``clean_environ``
    keeps this machine's user and token out)."""
    module = new_arcpy()
    monkeypatch.setitem(sys.modules, "arcpy", module)
    # Never re-import wmsync behind the tests' back (monkeypatched functions, classes
    # other tests hold), even when a source file changes during the run.
    monkeypatch.setenv("WMSYNC_RELOAD", "0")
    yield module
    # The fake refuses off-thread calls; a refusal swallowed somewhere still fails here.
    assert not module._fake.off_thread_calls, module._fake.off_thread_calls


@pytest.fixture(name="toolbox")
def toolbox_fixture(arcpy, monkeypatch):
    """``WorkflowSync.pyt`` executed from its file with the fake arcpy."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the .pyt adds its folder
    return load_toolbox(arcpy, os.fspath(PYT))
