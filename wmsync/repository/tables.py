"""The emulated repository's SQLite schema, and how element rows are encoded.

Table ``elements`` holds the current version of every element, tombstones included:
``guid``, ``kind``, ``local_id`` (jobs, job types, groups, holds; unique per kind; never
reused, so tombstones keep theirs), ``fields`` (JSON ``{name: text}``), ``vv`` (JSON),
``modified``, ``origin``, ``deleted``, ``via`` ("" for a local version) and ``gen``.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import json
from typing import Any, Mapping, Tuple

from wmsync.model import KINDS

#: Kinds whose elements get a local numeric id.
ID_KINDS: Tuple[str, ...] = ("JobType", "Group", "Job", "Hold")

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS elements (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    local_id INTEGER,
    fields TEXT NOT NULL,
    vv TEXT NOT NULL,
    modified INTEGER NOT NULL,
    origin TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    via TEXT NOT NULL DEFAULT '',
    gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS elements_gen ON elements (gen);
CREATE UNIQUE INDEX IF NOT EXISTS elements_kind_id ON elements (kind, local_id)
    WHERE local_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS elements_job_of ON elements (kind, json_extract(fields, '$.job'))
    WHERE kind IN ('Hold', 'Activity');
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    serverURL TEXT NOT NULL DEFAULT '',
    isParent INTEGER NOT NULL DEFAULT 0,
    isConnected INTEGER NOT NULL DEFAULT 1,
    lastSync INTEGER,
    lastSyncGen INTEGER,
    syncId TEXT,
    jobIdStart INTEGER,
    jobIdBlock INTEGER,
    peerGen INTEGER
);
CREATE TABLE IF NOT EXISTS conflicts (
    id INTEGER PRIMARY KEY,
    guid TEXT NOT NULL,
    kind TEXT NOT NULL,
    time INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    reason TEXT NOT NULL,
    winner_vv TEXT NOT NULL,
    winner_modified INTEGER NOT NULL,
    winner_origin TEXT NOT NULL,
    loser_vv TEXT NOT NULL,
    loser_modified INTEGER NOT NULL,
    loser_origin TEXT NOT NULL,
    loser_deleted INTEGER NOT NULL,
    loser_content TEXT NOT NULL,
    loser_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflicts_gen ON conflicts (gen);
CREATE INDEX IF NOT EXISTS conflicts_guid ON conflicts (guid);
"""

_KIND_ORDER = "CASE kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS))
_KIND_ORDER += f" ELSE {len(KINDS)} END"

_COLUMNS = "guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen"
_UPSERT = (
    f"INSERT INTO elements ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, "
    "local_id = excluded.local_id, fields = excluded.fields, vv = excluded.vv, "
    "modified = excluded.modified, origin = excluded.origin, "
    "deleted = excluded.deleted, via = excluded.via, gen = excluded.gen"
)

# One encoder for every row: json.dumps with these options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


_quote = json.encoder.encode_basestring  # the encoder's own string quoting (C)


def _fields_json(fields: Mapping[str, str]) -> str:
    """``_dumps(fields)`` for text fields, character for character, in about 70 % of
    its time (an import writes one per row)."""
    return "{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in sorted(fields.items())]) + "}"

