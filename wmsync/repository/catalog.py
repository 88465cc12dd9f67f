"""Configuration every emulated repository has: fixed lists and the default elements.

Priorities, statuses, hold types and activity types are served from these constants and
never synchronized. The default job type, user and group *are* elements; they are written
with an empty version vector, ``modified`` 0 and ``origin`` :data:`DEFAULT_ORIGIN` at
generation 1, so that every new repository holds identical defaults and they never
conflict.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from wmsync.model import Element, guid_for_name

# Job stages (Esri's esriJTXJobStage): the viewer treats 5 as closed.
STAGE_CREATED, STAGE_READY, STAGE_WORKING, STAGE_DONE, STAGE_CLOSED = 1, 2, 3, 4, 5

JOB_PRIORITIES: List[Dict[str, object]] = [
    {"value": 0, "name": "None"},
    {"value": 1, "name": "Low"},
    {"value": 2, "name": "Medium"},
    {"value": 3, "name": "High"},
    {"value": 4, "name": "Highest"},
    {"value": 5, "name": "Critical"},
]

JOB_STATUSES: List[Dict[str, object]] = [
    {"id": 1, "name": "Created"},
    {"id": 2, "name": "Ready To Work"},
    {"id": 3, "name": "Working"},
    {"id": 4, "name": "Done Working"},
    {"id": 5, "name": "Closed"},
]
STATUS_CREATED, STATUS_READY, STATUS_CLOSED = 1, 2, 5

HOLD_TYPES: List[Dict[str, object]] = [
    {"id": 1, "name": "Waiting for Data"},
    {"id": 2, "name": "Waiting for Review"},
    {"id": 3, "name": "Other"},
]

# (id, name, description); the viewer looks for the one named "Comment".
_ACTIVITY: Tuple[Tuple[int, str, str], ...] = (
    (1, "CreateJob", "Job created"),
    (2, "AssignJob", "Job assigned"),
    (3, "UnassignJob", "Job unassigned"),
    (4, "CloseJob", "Job closed"),
    (5, "ReopenJob", "Job reopened"),
    (6, "UpdateJob", "Job properties updated"),
    (7, "Comment", "Comment"),
    (8, "AddHold", "Hold added"),
    (9, "ReleaseHold", "Hold released"),
    (10, "UpdateNotes", "Notes updated"),
)
ACTIVITY_TYPES: List[Dict[str, object]] = [
    {"id": i, "name": n, "description": d} for i, n, d in _ACTIVITY
]
ACTIVITY = {name: ident for ident, name, _ in _ACTIVITY}

PRIVILEGES: List[Dict[str, object]] = [
    {"name": name}
    for name in (
        "CreateJob",
        "UpdateProperties",
        "AssignAnyJob",
        "CloseJob",
        "ReopenClosedJobs",
        "DeleteJobs",
        "CanAddComments",
        "ManageHolds",
        "UpdateNotes",
    )
]

# The ``origin`` of the default elements. Identical on every repository; not "" because
# the exchange schema (jxl.xsd) requires a non-empty origin on every version.
DEFAULT_ORIGIN = "default"

DEFAULT_JOB_TYPE = "Default"
DEFAULT_USER = "admin"
DEFAULT_GROUP = "Administrators"


def default_elements() -> List[Element]:
    """The default configuration elements of a new repository (identical everywhere)."""
    return [
        Element(
            kind="JobType",
            guid=guid_for_name("JobType", DEFAULT_JOB_TYPE),
            vv={},
            modified=0,
            origin=DEFAULT_ORIGIN,
            fields={
                "name": DEFAULT_JOB_TYPE,
                "description": "Default job type",
                "created": "0",
                "defaultPriority": "0",
                "defaultAssignedType": "0",
            },
            local_id=1,
        ),
        Element(
            kind="User",
            guid=guid_for_name("User", DEFAULT_USER),
            vv={},
            modified=0,
            origin=DEFAULT_ORIGIN,
            fields={"userName": DEFAULT_USER, "fullName": "Administrator"},
        ),
        Element(
            kind="Group",
            guid=guid_for_name("Group", DEFAULT_GROUP),
            vv={},
            modified=0,
            origin=DEFAULT_ORIGIN,
            fields={"name": DEFAULT_GROUP, "users": DEFAULT_USER},
            local_id=1,
        ),
    ]
