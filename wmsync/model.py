"""What travels between repositories: elements, their version vectors and content.

An *element* is one synchronized thing with a GUID: a job type, a user, a group, a job
(with its notes), a hold or an activity record (docs/design.md §4). Holds and activity
records are elements of their own that reference their job by GUID, so a hold placed on
one node and an edit made on another never conflict.

Content is kept as text, exactly as it travels in the exchange document: ``fields`` maps
an attribute name to its text (numbers in decimal, times in epoch ms UTC, references as
GUIDs); a missing key means null. The local numeric id (``local_id``), the ``via`` peer
and the generation are *not* content: hashes and comparisons leave them out.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import quote, unquote

VersionVector = Dict[str, int]

#: The longest text one field may hold (characters): what the REST API accepts and the
#: exchange carries (its parser reads it without lxml's huge_tree mode).
MAX_TEXT_CHARS = 1_000_000

# The content fields of each kind, in document order. References to other elements
# (``jobType``, ``parentJob``, ``job``) hold GUIDs. ``Group.users`` is a space-separated
# list of percent-encoded user names. ``Job.notes`` travels as a <Note> child element.
FIELDS: Dict[str, Tuple[str, ...]] = {
    "JobType": (
        "name",
        "description",
        "created",
        "defaultJobName",
        "defaultDescription",
        "defaultPriority",
        "defaultAssignedType",
        "defaultAssignedTo",
        "defaultDataWorkspaceId",
        "defaultParentVersion",
    ),
    "User": ("userName", "fullName", "email"),
    "Group": ("name", "description", "users"),
    "Job": (
        "name",
        "description",
        "createdBy",
        "ownedBy",
        "assignedTo",
        "assignedType",
        "jobType",
        "parentJob",
        "priority",
        "stage",
        "status",
        "percentageComplete",
        "createdDate",
        "startDate",
        "startedDate",
        "dueDate",
        "endDate",
        "dataWorkspaceId",
        "parentVersion",
        "versionName",
        "notes",
    ),
    "Hold": (
        "job",
        "type",
        "heldBy",
        "holdDate",
        "holdComments",
        "releasedBy",
        "releaseDate",
        "releaseComments",
    ),
    "Activity": ("job", "type", "user", "date", "message"),
}

# Kinds in the order an exchange document lists them: referenced kinds come first.
KINDS: Tuple[str, ...] = ("JobType", "User", "Group", "Job", "Hold", "Activity")

# Fields that hold a reference (GUID) to another element, and the kind referenced.
REFERENCES: Dict[str, Dict[str, str]] = {
    "Job": {"jobType": "JobType", "parentJob": "Job"},
    "Hold": {"job": "Job"},
    "Activity": {"job": "Job"},
}

# Users, groups and job types whose identity is their name get a GUID derived from it,
# so two repositories never hold two "admin" users or two "Default" job types.
_NAME_NAMESPACE = uuid.UUID("6f1c2c9e-3b5e-4d0a-9a57-2f8d0c3e7a11")


def guid_for_name(kind: str, name: str) -> str:
    """Return the GUID an element identified by its *name* always has (uuid5)."""
    return str(uuid.uuid5(_NAME_NAMESPACE, f"{kind}:{name}"))


def new_guid() -> str:
    """Return a new random GUID for an element created locally."""
    return str(uuid.uuid4())


def vv_to_text(vv: Mapping[str, int]) -> str:
    """Write a version vector as ``Name:3 Other%20Name:2`` (sorted, names percent-encoded)."""
    return " ".join(f"{quote(name, safe='')}:{count}" for name, count in sorted(vv.items()))


def vv_from_text(text: str) -> VersionVector:
    """Read a version vector written by :func:`vv_to_text`.

    :raises ValueError: an entry is not ``name:positive-integer``.
    """
    vv: VersionVector = {}
    for entry in text.split():
        name, sep, count = entry.rpartition(":")
        if not sep or not name or not count.isdigit() or int(count) <= 0:
            raise ValueError(f"invalid version vector entry {entry!r}")
        vv[unquote(name)] = int(count)
    return vv


EQUAL, NEWER, OLDER, CONCURRENT = "equal", "newer", "older", "concurrent"


def compare_vv(a: Mapping[str, int], b: Mapping[str, int]) -> str:
    """Compare version vectors: ``newer`` if *a* dominates *b*, ``older`` if *b* dominates
    *a*, ``equal`` or ``concurrent``."""
    a_ahead = any(count > b.get(name, 0) for name, count in a.items())
    b_ahead = any(count > a.get(name, 0) for name, count in b.items())
    if a_ahead and b_ahead:
        return CONCURRENT
    if a_ahead:
        return NEWER
    if b_ahead:
        return OLDER
    return EQUAL


def merge_vv(a: Mapping[str, int], b: Mapping[str, int]) -> VersionVector:
    """Pointwise maximum: a version that supersedes both *a* and *b*."""
    merged = dict(a)
    for name, count in b.items():
        merged[name] = max(count, merged.get(name, 0))
    return merged


def bump_vv(vv: Mapping[str, int], repository: str) -> VersionVector:
    """The version vector of a local edit on *repository*: its own counter plus one."""
    bumped = dict(vv)
    bumped[repository] = bumped.get(repository, 0) + 1
    return bumped


@dataclass(frozen=True)
class Element:
    """One version of one element, as it travels and as a repository stores it.

    ``deleted`` marks a tombstone: ``fields`` is then empty, except for a hold or activity
    record deleted with its job, which keeps its content so that it comes back with the
    job (docs/design.md §4). ``local_id`` is the numeric
    id on the repository the version was read from (jobs, job types, holds, groups).
    """

    kind: str
    guid: str
    vv: Mapping[str, int]
    modified: int
    origin: str
    fields: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False
    local_id: Optional[int] = None

    def content_hash(self) -> str:
        """Hash of the content only (kind, fields, deleted): not id, vv, via, generation."""
        payload = json.dumps(
            [self.kind, self.deleted, sorted(self.fields.items())],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        # surrogatepass: a lone surrogate is content too (the exchange carries it).
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()

    def same_content(self, other: Element) -> bool:
        """True when *other* holds the same content (whatever its version)."""
        return (
            self.kind == other.kind
            and self.deleted == other.deleted
            and dict(self.fields) == dict(other.fields)
        )


def conflict_winner(a: Element, b: Element) -> Element:
    """Pick the winner between two concurrent versions of one element.

    Depends only on the two versions, so every node picks the same winner in any order of
    arrival: the newer ``modified`` wins, ties go to the greater ``origin`` name, then to
    the greater content hash.
    """
    key_a = (a.modified, a.origin, a.content_hash())
    key_b = (b.modified, b.origin, b.content_hash())
    return a if key_a >= key_b else b
