"""The emulated repository's SQLite schema, and how element rows are encoded.

Table ``elements`` holds the current version of every element, tombstones included:
``guid``, ``kind``, ``local_id`` (jobs, job types, groups, holds; unique per kind; never
reused, so tombstones keep theirs), ``fields`` (JSON ``{name: text}``; ``{}`` for a
tombstone, except a hold or activity record deleted with its job), ``vv`` (JSON),
``modified``, ``origin``, ``deleted``, ``via`` ("" for a local version) and ``gen``.
"""

# SQL text here is assembled from module constants only (column lists, the kind order);
# every value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from wmsync.model import KINDS, Element

from .records import StoredElement

#: Kinds whose elements get a local numeric id.
ID_KINDS: Tuple[str, ...] = ("JobType", "Group", "Job", "Hold")

SCHEMA_VERSION = "1"

SCHEMA = """
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
    peerGen INTEGER,
    syncSeq INTEGER,
    peerSeq INTEGER,
    peerInstance TEXT,
    peerGenSeen INTEGER,
    peerCounterSeen TEXT
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
    loser_hash TEXT NOT NULL,
    job_id INTEGER,
    name TEXT,
    fields TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS conflicts_gen ON conflicts (gen);
CREATE INDEX IF NOT EXISTS conflicts_guid ON conflicts (guid);
"""

#: Columns added to the conflict log after its first version (added on opening an older
#: file): the job's id, the element's name and the fields that differ.
CONFLICT_COLUMNS_ADDED = (
    ("job_id", "INTEGER"),
    ("name", "TEXT"),
    ("fields", "TEXT NOT NULL DEFAULT '[]'"),
)

#: Columns added to the node table for restore detection (docs/design.md §4, "Restores
#: and rebuilds"; added on opening an older file): the sequence number of the pair's
#: syncId this side holds, and what it confirmed of the peer: the sequence number the
#: peer holds, its instance id, its generation and its highest own counter.
NODE_COLUMNS_ADDED = (
    ("peerGen", "INTEGER"),
    ("syncSeq", "INTEGER"),
    ("peerSeq", "INTEGER"),
    ("peerInstance", "TEXT"),
    ("peerGenSeen", "INTEGER"),
    ("peerCounterSeen", "TEXT"),
)

#: SQL ordering rows by kind in document order (model.KINDS).
KIND_ORDER = "CASE kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS))
KIND_ORDER += f" ELSE {len(KINDS)} END"

#: The columns of table ``elements``, in the order rows are read and written.
COLUMNS = "guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen"
#: Insert or replace one element row (parameters in :data:`COLUMNS` order).
UPSERT = (
    f"INSERT INTO elements ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (guid) DO UPDATE SET kind = excluded.kind, "
    "local_id = excluded.local_id, fields = excluded.fields, vv = excluded.vv, "
    "modified = excluded.modified, origin = excluded.origin, "
    "deleted = excluded.deleted, via = excluded.via, gen = excluded.gen"
)

# One encoder for every row: json.dumps with these options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# SQLite takes text as UTF-8, which cannot hold a lone surrogate: JSON's own \uXXXX
# escape carries it (json.loads gives it back).
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPES = {code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)}


def _storable(text: str) -> str:
    if text.isascii() or _SURROGATE.search(text) is None:  # isascii: 60x quicker
        return text
    return text.translate(_SURROGATE_ESCAPES)


def dumps(value: Any) -> str:
    """The JSON text of a stored value (sorted keys, compact)."""
    return _storable(_ENCODER.encode(value))


_quote = json.encoder.encode_basestring  # the encoder's own string quoting (C)


def _quoted_fields(fields: Mapping[str, str]) -> str:
    return "{" + ",".join([f"{_quote(k)}:{_quote(v)}" for k, v in sorted(fields.items())]) + "}"


def _c_fields_encoder() -> Optional[Callable[[Mapping[str, str]], str]]:
    """The json module's C encoder with :data:`_ENCODER`'s options, made once (about 60 %
    of :func:`_quoted_fields`' time; ``JSONEncoder.encode`` makes a new one per call),
    or ``None`` where this Python has none or it writes anything else."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode = make(None, None, _quote, None, ":", ",", True, False, True)

        def encoded(fields: Mapping[str, str]) -> str:
            return "".join(encode(fields, 0))

        probe = {"z": 'a"b\\c\n\u00e9\U0001f600', "a": "", "\u00e9": "\x00\x1f"}
        return encoded if encoded(probe) == _quoted_fields(probe) else None
    except (TypeError, ValueError):  # another signature
        return None


_encode_fields = _c_fields_encoder() or _quoted_fields


def fields_json(fields: Mapping[str, str]) -> str:
    """``dumps(fields)`` for text fields, character for character, in about 40 % of
    its time (an import writes one per row)."""
    return _storable(_encode_fields(fields))


def row_element(row: Sequence[Any]) -> StoredElement:
    """A row of :data:`COLUMNS` as the element it stores."""
    guid, kind, local_id, fields, vv, modified, origin, deleted, via, gen = row
    element = Element(
        kind=kind,
        guid=guid,
        vv=json.loads(vv),
        modified=int(modified),
        origin=origin,
        fields=json.loads(fields),
        deleted=bool(deleted),
        local_id=local_id,
    )
    return StoredElement(element, via, int(gen))


def element_row(element: Element, via: str, gen: int) -> Tuple[Any, ...]:
    """The row that stores *element* (parameters of :data:`UPSERT`)."""
    return (
        element.guid,
        element.kind,
        element.local_id,
        dumps(dict(element.fields)),  # a tombstone's: none, or kept with its job's
        dumps(dict(element.vv)),
        element.modified,
        element.origin,
        1 if element.deleted else 0,
        via,
        gen,
    )
