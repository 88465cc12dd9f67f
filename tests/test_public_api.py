"""The small public surface of ``wmsync`` and what importing it pulls in."""

from __future__ import annotations

import subprocess
import sys

import wmsync


def test_all_names_exist_and_every_public_name_is_listed():
    assert sorted(wmsync.__all__) == sorted(set(wmsync.__all__))
    for name in wmsync.__all__:
        assert hasattr(wmsync, name), name
    public = {n for n in vars(wmsync) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(wmsync, n)).__name__ == "module"}
    assert public - modules - {"annotations", "logging"} == set(wmsync.__all__) - {"__version__"}


def test_the_package_logger_has_a_null_handler():
    # Checked in a fresh interpreter: the CLI tests configure logging in this one.
    code = (
        "import logging, wmsync; h = logging.getLogger('wmsync').handlers; "
        "print([type(x).__name__ for x in h])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['NullHandler']", done.stderr


def test_importing_wmsync_needs_neither_the_emulator_nor_werkzeug():
    code = (
        "import sys; sys.modules['werkzeug'] = None\n"
        "import wmsync, wmsync.cli, wmsync.engine, wmsync.client\n"
        "bad = [m for m in sys.modules if m.startswith('wmsync.emulator')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
