"""A faithful fake arcpy for testing ``WorkflowSync.pyt`` without ArcGIS Pro.

``new_arcpy()`` builds a fresh ``arcpy`` module (its own messages, progressor and
environment state) from ``_arcpy.py``; ``load_toolbox(path)`` executes a ``.pyt`` from its
file with ``SourceFileLoader``, as ArcGIS Pro does. ``fixtures.py`` has the pytest
fixtures that plant the fake in ``sys.modules['arcpy']``.
"""

from __future__ import annotations

import importlib.util
import os
import types

_IMPL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_arcpy.py")


def new_arcpy() -> types.ModuleType:
    """A fresh fake ``arcpy`` module (not yet placed in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location("arcpy", _IMPL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_toolbox(arcpy: types.ModuleType, path: str) -> types.ModuleType:
    """Execute the ``.pyt`` at *path* (``arcpy`` must already be in ``sys.modules``)."""
    return arcpy._load_pyt(path)


__all__ = ["load_toolbox", "new_arcpy"]
