"""What the stock replica compares: normalized *views* of jobs and holds, and the
provenance tag it adds to the holds and activity records it writes.

A view holds only what a stock server shows and (for jobs) what ``jobs/{id}/update``,
close/reopen and ``notes/update`` can set, as text, with a missing value and its
server default written the same way. The view of what a server answered is compared
with the view of the same element as last seen there (change detection), and the view
a shadow element asks for with the view last seen (what to write). Views never hold
server ids: references (job type, parent job) are GUIDs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence

from wmsync.model import Element

View = Dict[str, str]

#: Job fields ``jobs/{id}/update`` sets, with the value a missing one reads as.
JOB_UPDATABLE: Dict[str, str] = {
    "name": "",
    "description": "",
    "priority": "0",
    "status": "",
    "startDate": "",
    "dueDate": "",
    "ownedBy": "",
    "assignedType": "0",
    "assignedTo": "",
    "percentageComplete": "0",
    "dataWorkspaceId": "",
    "parentVersion": "",
    "versionName": "",
}
#: Job fields a server sets itself: copied from a server into the shadow, never written.
JOB_SERVER_SET = ("createdBy", "createdDate", "startedDate", "endDate", "stage")
STAGE_CLOSED = "5"

_TAG = re.compile(r"\s*\[wmsync: [^\]]*key ([0-9a-fA-F-]{36})\]\s*$")
_JOB = re.compile(r"; job ([0-9a-fA-F-]{36}); key [0-9a-fA-F-]{36}\]\s*$")


def text(value: Any) -> str:
    """A server value as element text: ``None`` -> "", numbers in decimal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _norm(value: Optional[str], default: str) -> str:
    return value if value not in (None, "") else default  # type: ignore[return-value]


def job_view_of_fields(fields: Mapping[str, str]) -> View:
    """The view of a job element's content (what the shadow asks a server to hold)."""
    view = {key: _norm(fields.get(key), default) for key, default in JOB_UPDATABLE.items()}
    view["parentJob"] = fields.get("parentJob", "")
    view["jobType"] = fields.get("jobType", "")
    view["closed"] = "1" if fields.get("stage") == STAGE_CLOSED else "0"
    view["notes"] = fields.get("notes", "")
    return view


def job_fields_of_server(
    job: Mapping[str, Any], notes: str, parent_guid: str, type_guid: str
) -> Dict[str, str]:
    """A server's job as element fields (references already turned into GUIDs)."""
    fields = {key: text(job.get(key)) for key in JOB_UPDATABLE}
    fields.update({key: text(job.get(key)) for key in JOB_SERVER_SET})
    fields["parentJob"] = parent_guid
    fields["jobType"] = type_guid
    fields["notes"] = notes
    return {key: value for key, value in fields.items() if value != ""}


def compare_keys(view: Mapping[str, str]) -> Dict[str, str]:
    """The part of a job view the writer makes equal (``jobType`` is set at create
    only: ``jobs/{id}/update`` is not documented to change it)."""
    return {k: v for k, v in view.items() if k != "jobType"}


def hold_view_of_server(hold: Mapping[str, Any]) -> View:
    return {
        "type": text(hold.get("type")),
        "comments": strip_tag(text(hold.get("holdComments"))),
        "released": "1" if hold.get("releaseDate") is not None else "0",
    }


def hold_view_of_fields(fields: Mapping[str, str]) -> View:
    return {
        "type": fields.get("type", ""),
        "comments": strip_tag(fields.get("holdComments", "")),
        "released": "1" if fields.get("releaseDate") else "0",
    }


def hold_keys(job_id: int, holds: Sequence[Mapping[str, Any]]) -> List[str]:
    """The state store's keys of a job's holds as a server answered them."""
    return [f"{job_id}/{hold.get('id')}" for hold in holds]


def activity_keys(job_id: int, activity: Sequence[Mapping[str, Any]]) -> List[str]:
    """The state store's keys of a job's activity records, in the server's order:
    their content, numbered where two records are alike."""
    counts: Counter[str] = Counter()
    keys = []
    for record in activity:
        base = activity_key(record)
        counts[base] += 1
        keys.append(f"{job_id}/{base}#{counts[base]}")
    return keys


def activity_key(record: Mapping[str, Any]) -> str:
    """How an activity record is told apart on a server (it has no id)."""
    return json.dumps(
        [
            text(record.get("date")),
            text(record.get("type")),
            text(record.get("user")),
            text(record.get("message")),
        ],
        ensure_ascii=False,
    )


def dumps(view: Mapping[str, str]) -> str:
    return json.dumps(dict(view), sort_keys=True, ensure_ascii=False)


def loads(value: Optional[str]) -> View:
    return dict(json.loads(value)) if value else {}


# -- provenance tags ------------------------------------------------------------------


def tag(element: Element, user: str) -> str:
    """The tag a hold or activity record written by the tool carries: where and when the
    original was made, by whom, its job's GUID and its own (how a later scan knows it,
    and how a rebuilt state store finds the job's GUID again)."""
    moment = element.modified or 0
    when = datetime.fromtimestamp(moment / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    who = user.replace("]", ")") or "?"
    origin = element.origin.replace("]", ")")
    job = element.fields.get("job", "")
    return f"[wmsync: from {origin}, {when}, by {who}; job {job}; key {element.guid}]"


def with_tag(comment: str, element: Element, user: str) -> str:
    return f"{comment}\n{tag(element, user)}" if comment else tag(element, user)


def tagged_guid(comment: Optional[str]) -> Optional[str]:
    """The GUID in a comment's provenance tag, or ``None``."""
    if not comment:
        return None
    match = _TAG.search(comment)
    return match.group(1).lower() if match else None


def tagged_job(comment: Optional[str]) -> Optional[str]:
    """The job GUID in a comment's provenance tag, or ``None``."""
    if not comment:
        return None
    match = _JOB.search(comment)
    return match.group(1).lower() if match else None


def strip_tag(comment: str) -> str:
    return _TAG.sub("", comment) if comment else ""
