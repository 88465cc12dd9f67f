"""``wmsync install-toolbox DEST``: a drop-in toolbox folder for ArcGIS Pro.

The folder holds ``WorkflowSync.pyt``, its ``.pyt.xml`` item descriptions and a copy of
the ``wmsync`` package beside it, so a user copies one folder, adds the toolbox in the
Catalog pane and runs the tool: no pip, no conda. The emulator (which needs werkzeug)
is left out: nothing the toolbox runs imports it.
"""

from __future__ import annotations

import os
import shutil
from typing import List

from .errors import WMSyncError

TOOLBOX_FILE = "WorkflowSync.pyt"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SOURCE_ROOT = os.path.dirname(_PACKAGE_DIR)
_LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "emulator", "demo.py")


def toolbox_sources(root: str = _SOURCE_ROOT) -> List[str]:
    """The .pyt and its metadata files in a source checkout (or editable install).

    :raises WMSyncError: the checkout has no ``WorkflowSync.pyt``.
    """
    pyt = os.path.join(root, TOOLBOX_FILE)
    if not os.path.isfile(pyt):
        raise WMSyncError(
            f"{TOOLBOX_FILE} not found beside the wmsync package ({root}); "
            "run install-toolbox from a source checkout (pip install -e .)"
        )
    files = [pyt]
    for folder in (root, os.path.join(root, "metadata")):
        if os.path.isdir(folder):
            files += [
                os.path.join(folder, name)
                for name in sorted(os.listdir(folder))
                if name.startswith("WorkflowSync") and name.endswith(".pyt.xml")
            ]
    return files


def install_toolbox(dest: str, *, overwrite: bool = False, root: str = _SOURCE_ROOT) -> str:
    """Write the toolbox folder *dest*; returns the path of the installed ``.pyt``.

    :param overwrite: replace an existing ``wmsync`` copy in *dest* (an update).
    :raises WMSyncError: *dest* already holds a toolbox and *overwrite* is false.
    """
    sources = toolbox_sources(root)
    package_copy = os.path.join(dest, "wmsync")
    if os.path.exists(package_copy):
        if not overwrite:
            raise WMSyncError(f"{dest} already holds a wmsync copy; use --force to update it")
        shutil.rmtree(package_copy)
    os.makedirs(dest, exist_ok=True)
    for source in sources:
        shutil.copy2(source, os.path.join(dest, os.path.basename(source)))
    shutil.copytree(_PACKAGE_DIR, package_copy, ignore=_LEFT_OUT)
    return os.path.join(dest, TOOLBOX_FILE)
