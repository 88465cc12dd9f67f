"""``wmsync install-toolbox DEST``: a drop-in toolbox folder for ArcGIS Pro.

The folder holds ``WorkflowSync.pyt``, its ``.pyt.xml`` item descriptions (ArcGIS Pro
reads ``WorkflowSync.pyt.xml`` and ``WorkflowSync.<Tool>.pyt.xml`` from the folder of
the ``.pyt``) and a copy of the ``wmsync`` package beside it, so a user copies one
folder, adds the toolbox in the Catalog pane and runs the tool: no pip, no conda. The
emulator and the demo (which need werkzeug) are left out: nothing the toolbox or
``wmsync sync`` runs imports them, and werkzeug is not in ArcGIS Pro.

Updating (``overwrite=True``, ``--force``) replaces the package copy whole: the new copy
is written beside the old one first and swapped in, so a failure half-way leaves the
old toolbox working. Files get the install time as their modification time (not the
checkout's), which is what the ``.pyt`` looks at to re-import a changed package when
the toolbox is refreshed in a running Pro session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict, List

from .errors import WMSyncError

TOOLBOX_FILE = "WorkflowSync.pyt"
PACKAGE = "wmsync"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SOURCE_ROOT = os.path.dirname(_PACKAGE_DIR)
#: Left out of the package copy: development-only parts and build debris.
_LEFT_OUT = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", "emulator", "demo.py", "*.egg-info", ".*"
)


def toolbox_sources(root: str = _SOURCE_ROOT) -> List[str]:
    """The .pyt and its metadata files in a source checkout (or editable install).

    Metadata is looked for beside the ``.pyt`` and in ``metadata/``; all of it is
    installed beside the ``.pyt``, where ArcGIS Pro reads it.

    :raises WMSyncError: the checkout has no ``WorkflowSync.pyt``.
    """
    pyt = os.path.join(root, TOOLBOX_FILE)
    if not os.path.isfile(pyt):
        raise WMSyncError(
            f"{TOOLBOX_FILE} not found beside the wmsync package ({root}); "
            "run install-toolbox from a source checkout (pip install -e .)"
        )
    found: Dict[str, str] = {}
    for folder in (root, os.path.join(root, "metadata")):
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if name.startswith("WorkflowSync.") and name.endswith(".pyt.xml"):
                    found.setdefault(name, os.path.join(folder, name))  # root wins
    return [pyt, *(found[name] for name in sorted(found))]


def _same_or_inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _copy_file(source: str, target: str) -> None:
    # Contents and permission bits, not timestamps (see the module doc).
    shutil.copyfile(source, target)
    shutil.copymode(source, target)


def install_toolbox(dest: str, *, overwrite: bool = False, root: str = _SOURCE_ROOT) -> str:
    """Write the toolbox folder *dest*; returns the path of the installed ``.pyt``.

    :param dest: the folder to write (created if missing).
    :param overwrite: replace an existing toolbox in *dest* (an update).
    :param root: the source checkout holding ``WorkflowSync.pyt`` and ``wmsync/``.
    :raises WMSyncError: *dest* already holds a toolbox and *overwrite* is false, or
        *dest* is the source checkout itself or inside the package.
    """
    sources = toolbox_sources(root)
    package_dir = os.path.join(root, PACKAGE)
    if not os.path.isdir(package_dir):
        raise WMSyncError(f"no {PACKAGE} package in {root}")
    if os.path.realpath(dest) == os.path.realpath(root) or _same_or_inside(dest, package_dir):
        raise WMSyncError(
            f"{dest} is the source checkout or inside its package; choose another folder"
        )
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise WMSyncError(f"{dest} exists and is not a folder")

    package_copy = os.path.join(dest, PACKAGE)
    existing = [
        path for path in (package_copy, os.path.join(dest, TOOLBOX_FILE)) if os.path.lexists(path)
    ]
    if existing and not overwrite:
        raise WMSyncError(f"{dest} already holds a toolbox; use --force to update it")

    os.makedirs(dest, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".wmsync-new-", dir=dest)
    old = None
    try:
        new_package = os.path.join(staging, PACKAGE)
        shutil.copytree(package_dir, new_package, ignore=_LEFT_OUT, copy_function=_copy_file)
        for source in sources:
            _copy_file(source, os.path.join(staging, os.path.basename(source)))
        if os.path.lexists(package_copy):
            old = os.path.join(staging, PACKAGE + ".old")
            os.replace(package_copy, old)
        os.replace(new_package, package_copy)
        # The .pyt last: a toolbox folder with a .pyt always has a complete package.
        for source in [*sources[1:], sources[0]]:
            name = os.path.basename(source)
            os.replace(os.path.join(staging, name), os.path.join(dest, name))
    except BaseException:
        if old is not None and not os.path.lexists(package_copy):
            os.replace(old, package_copy)  # put the working copy back
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(dest, TOOLBOX_FILE)
