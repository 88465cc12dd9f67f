"""The store's errors, and the rows it hands out: elements, nodes, exports, imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from wmsync.exchange.leftout import LeftOut
from wmsync.model import Element


class StoreError(Exception):
    """Base of the store's own errors (the app maps them to error envelopes)."""


class ImportRefused(StoreError, ValueError):
    """The elements cannot be applied (e.g. a GUID held by another kind): nothing changed."""


class WrongRepository(StoreError, ValueError):
    """The database file belongs to another repository."""


class UnknownPeer(StoreError, ValueError):
    """An import names a sending peer this repository has no node row of: nothing
    changed (the sequence number it carries has nowhere to be recorded)."""


@dataclass(frozen=True)
class StoredElement:
    """The current version of one element, with where it came from and when."""

    element: Element
    via: str
    gen: int

    @property
    def guid(self) -> str:
        return self.element.guid

    @property
    def kind(self) -> str:
        return self.element.kind

    @property
    def local_id(self) -> Optional[int]:
        return self.element.local_id

    @property
    def deleted(self) -> bool:
        return self.element.deleted

    @property
    def fields(self) -> Mapping[str, str]:
        return self.element.fields


@dataclass(frozen=True)
class Node:
    """One row of the replication node table."""

    id: int
    name: str
    description: str
    server_url: str
    is_parent: bool
    is_connected: bool
    last_sync: Optional[int]
    last_sync_gen: Optional[int]
    sync_id: Optional[str]
    job_id_start: Optional[int]
    job_id_block: Optional[int]
    #: The peer's generation up to which the peer's changes are here (file exchange).
    peer_gen: Optional[int] = None
    sync_seq: Optional[int] = None
    peer_seq: Optional[int] = None
    peer_instance: Optional[str] = None
    peer_gen_seen: Optional[int] = None
    #: The peer's highest own counter as seen, as ``incarnation:counter`` (vv text).
    peer_counter_seen: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The node as ``replication/info`` lists it."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "serverURL": self.server_url,
            "isParent": self.is_parent,
            "isConnected": self.is_connected,
            "lastSync": self.last_sync,
            "lastSyncGen": self.last_sync_gen,
            "syncId": self.sync_id,
            "jobIdStart": self.job_id_start,
            "jobIdBlock": self.job_id_block,
            "peerGen": self.peer_gen,
            "syncSeq": self.sync_seq,
            "peerSeq": self.peer_seq,
            "peerInstance": self.peer_instance,
            "peerGenSeen": self.peer_gen_seen,
            "peerCounterSeen": self.peer_counter_seen,
        }


@dataclass(frozen=True)
class ExportFile:
    """A finished export file and the window it covers."""

    export_id: str
    path: Path
    generation: int
    since_gen: int
    export_time: int
    count: int
    more: bool = False  # a split export: further chunks follow, from ``after``
    after: Optional[str] = None  # where the next chunk starts (an opaque cursor)
    # Elements that cannot travel, left out of the document (docs/design.md §4).
    skipped: List[LeftOut] = field(default_factory=list)


@dataclass
class ImportResult:
    """What an import did (the ``replication/import`` answer)."""

    import_time: int
    generation: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    conflicts: List[Dict[str, Any]] = field(default_factory=list)
    renumbered: List[Dict[str, Any]] = field(default_factory=list)
    renamed: List[Dict[str, Any]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "importTime": self.import_time,
            "generation": self.generation,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "conflicts": list(self.conflicts),
            "renumbered": list(self.renumbered),
            "renamed": list(self.renamed),
            "warnings": list(self.warnings),
        }
