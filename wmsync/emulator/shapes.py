"""Elements as Esri's JSON shapes, and request values as element fields.

The shapes follow ``docs/protocol.md §5``: epoch ms or ``null`` for times,
ids with the same JSON type as the root's lists, ``""`` (never missing) for
``dataWorkspaceId`` and ``parentVersion``, domain users with a backslash.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote, unquote

from wmsync.repository import catalog
from wmsync.repository.store import Session, StoredElement

from .envelope import BadRequest


def number(text: Optional[str], default: Optional[int] = None) -> Optional[int]:
    """A stored decimal field as an int (``default`` when null or unreadable)."""
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def parse_int(name: str, value: Any) -> Optional[int]:
    """A request value as an int: ints, integral floats and decimal text ("3") are
    accepted; ``None``/"" mean "not given".

    :raises BadRequest: naming the parameter.
    """
    if value is None or value == "" or isinstance(value, bool):
        if isinstance(value, bool):
            raise BadRequest(f"Invalid value for parameter {name}: {value!r}")
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "null":
            return None
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                as_float = 0.5
            if as_float.is_integer():
                return int(as_float)
    raise BadRequest(f"Invalid value for parameter {name}: {value!r}")


def parse_bool(name: str, value: Any, default: bool = False) -> bool:
    """``true``/``false`` (any case), Python booleans, 1/0."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"Invalid value for parameter {name}: {value!r} (true or false)")


def user_name(value: str) -> str:
    """A user name as sent (``DOMAIN|name``) in the form stored and replied
    (``DOMAIN\\name``)."""
    return value.replace("|", "\\")


def encode_users(names: List[str]) -> str:
    """``Group.users``: space-separated percent-encoded names."""
    return " ".join(quote(n, safe="") for n in names if n)


def decode_users(text: Optional[str]) -> List[str]:
    return [unquote(n) for n in (text or "").split()]


def _ref_id(session: Session, guid: Optional[str], kind: str) -> Optional[int]:
    if not guid:
        return None
    found = session.get_live(guid, kind)
    return found.local_id if found is not None else None


def job(session: Session, stored: StoredElement) -> Dict[str, Any]:
    """``GET /jobs/{id}``."""
    f = stored.fields
    return {
        "id": stored.local_id,
        "name": f.get("name", ""),
        "description": f.get("description", ""),
        "createdBy": f.get("createdBy", ""),
        "ownedBy": f.get("ownedBy", ""),
        "assignedTo": f.get("assignedTo", ""),
        "assignedType": number(f.get("assignedType"), 0),
        "jobTypeId": _ref_id(session, f.get("jobType"), "JobType"),
        "parentJobId": _ref_id(session, f.get("parentJob"), "Job"),
        "priority": number(f.get("priority"), 0),
        "stage": number(f.get("stage"), catalog.STAGE_CREATED),
        "status": number(f.get("status"), catalog.STATUS_CREATED),
        "percentageComplete": number(f.get("percentageComplete"), 0),
        "createdDate": number(f.get("createdDate")),
        "startDate": number(f.get("startDate")),
        "startedDate": number(f.get("startedDate")),
        "dueDate": number(f.get("dueDate")),
        "endDate": number(f.get("endDate")),
        "dataWorkspaceId": f.get("dataWorkspaceId", ""),
        "parentVersion": f.get("parentVersion", ""),
        "versionName": f.get("versionName", ""),
        "versionExists": False,
        "versionInfo": [],
    }


def job_type(stored: StoredElement) -> Dict[str, Any]:
    """``GET /jobTypes/{id}``: the job type with its ``default*`` fields."""
    f = stored.fields
    return {
        "id": stored.local_id,
        "name": f.get("name", ""),
        "description": f.get("description", ""),
        "category": "",
        "state": 1,
        "created": number(f.get("created")),
        "defaultJobName": f.get("defaultJobName", ""),
        "defaultDescription": f.get("defaultDescription", ""),
        "defaultPriority": number(f.get("defaultPriority"), 0),
        "defaultAssignedType": number(f.get("defaultAssignedType"), 0),
        "defaultAssignedTo": f.get("defaultAssignedTo", ""),
        "defaultDataWorkspaceId": f.get("defaultDataWorkspaceId", ""),
        "defaultParentVersionName": f.get("defaultParentVersion", ""),
        "defaultStartDate": None,
        "defaultDueDate": None,
        "defaultJobDuration": 0,
    }


def identity(stored: StoredElement) -> Dict[str, Any]:
    """The replication keys an element carries beyond Esri's shape (``guid``,
    ``modified``, ``origin``): added by the extended server only, never by stock mode."""
    element = stored.element
    return {"guid": element.guid, "modified": element.modified, "origin": element.origin}


#: Request keys of ``jobTypes/create|update`` and the fields they set.
JOB_TYPE_KEYS: Mapping[str, str] = {
    "name": "name",
    "description": "description",
    "defaultJobName": "defaultJobName",
    "defaultDescription": "defaultDescription",
    "defaultPriority": "defaultPriority",
    "defaultAssignedType": "defaultAssignedType",
    "defaultAssignedTo": "defaultAssignedTo",
    "defaultDataWorkspaceId": "defaultDataWorkspaceId",
    "defaultParentVersion": "defaultParentVersion",
    "defaultParentVersionName": "defaultParentVersion",
}
JOB_TYPE_NUMBERS = ("defaultPriority", "defaultAssignedType")


def user(stored: StoredElement) -> Dict[str, Any]:
    """An entry of ``GET /community/users``."""
    f = stored.fields
    return {
        "userName": f.get("userName", ""),
        "fullName": f.get("fullName", ""),
        "email": f.get("email", ""),
    }


def group(stored: StoredElement) -> Dict[str, Any]:
    """``GET /community/groups/{id}``."""
    f = stored.fields
    return {
        "id": stored.local_id,
        "name": f.get("name", ""),
        "description": f.get("description", ""),
        "users": decode_users(f.get("users")),
    }


def hold(stored: StoredElement) -> Dict[str, Any]:
    """An entry of ``GET /jobs/{id}/holds`` (``releaseDate`` null while active)."""
    f = stored.fields
    return {
        "id": stored.local_id,
        "type": number(f.get("type"), 0),
        "heldBy": f.get("heldBy", ""),
        "holdDate": number(f.get("holdDate")),
        "holdComments": f.get("holdComments", ""),
        "releasedBy": f.get("releasedBy", ""),
        "releaseDate": number(f.get("releaseDate")),
        "releaseComments": f.get("releaseComments", ""),
    }


def activity(stored: StoredElement) -> Dict[str, Any]:
    """An entry of ``GET /jobs/{id}/activity``."""
    f = stored.fields
    return {
        "date": number(f.get("date")),
        "type": number(f.get("type"), 0),
        "user": f.get("user", ""),
        "message": f.get("message", ""),
    }


def service_info(
    session: Session, repository: str, config_properties: Mapping[str, str]
) -> Dict[str, Any]:
    """The service root with Esri's keys only (the extended server adds ``name``)."""
    return {
        "currentVersion": 10.91,
        "serviceDescription": f"Workflow Manager emulator for repository {repository}",
        "jobTypes": [
            {"id": t.local_id, "name": t.fields.get("name", "")} for t in session.live("JobType")
        ],
        "jobPriorities": catalog.JOB_PRIORITIES,
        "jobStatuses": catalog.JOB_STATUSES,
        "holdTypes": catalog.HOLD_TYPES,
        "activityTypes": catalog.ACTIVITY_TYPES,
        "dataWorkspaces": [],
        "configProperties": dict(config_properties),
        "publicQueries": {"id": 0, "name": "Public Queries", "queries": [], "containers": []},
    }
