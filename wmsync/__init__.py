"""WorkflowSync: two-way synchronization of ArcGIS Workflow Manager repository clusters."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
