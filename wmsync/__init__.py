"""WorkflowSync: two-way synchronization of ArcGIS Workflow Manager repository clusters.

``synchronize(parent_url, parent_name, children)`` is the whole tool; see README.md.
"""

from __future__ import annotations

import logging

from .engine import synchronize
from .errors import (
    AuthenticationError,
    ConnectionFailed,
    ExchangeFormatError,
    ProtocolError,
    RepositoryError,
    ServerError,
    SyncRefused,
    TimedOut,
    ValueTableError,
    WMSyncError,
)
from .planning import plan
from .progress import SyncListener
from .report import ChildResult, PlanResult, SyncResult
from .valuetable import ChildSpec

#: The version, stated here only: pyproject.toml reads it (setuptools ``attr:``), so the
#: package and a drop-in toolbox copy, which has no installed metadata, agree.
__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ChildResult",
    "ChildSpec",
    "ConnectionFailed",
    "ExchangeFormatError",
    "PlanResult",
    "ProtocolError",
    "RepositoryError",
    "ServerError",
    "SyncListener",
    "SyncRefused",
    "SyncResult",
    "TimedOut",
    "ValueTableError",
    "WMSyncError",
    "__version__",
    "plan",
    "synchronize",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
