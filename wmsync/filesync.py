"""Export Job Data / Import Job Data: synchronization by file, for disconnected offices
(docs/design.md §11).

A file moves one direction of a (parent, child) pair with the same rules as a connected
run (docs/design.md §4): the exporting side sends its changes since what the peer has
acknowledged, leaving out versions that came via the peer once the pair is established;
the importing side imports them atomically (the server's one-transaction import, merge
rule and all), then records two marks in its node row of the source:

- ``peerGen``: the source's generation up to which the source's changes are here. It
  moves to the file's generation only when the file's window starts at or below it (no
  lost file in between); otherwise the content is imported but the mark stays, so the
  source sends the gap again;
- ``lastSyncGen``: the file's acknowledgement, the importing side's generation up to
  which its changes are in the source; it moves this side's next export window forward.

Both only move forward, so a repeated or older file changes nothing, and a lost file
costs nothing but a larger next file. Marks are taken only when the file's ``syncId``
matches the importing side's row: the parent owns the pair's ``syncId`` (made at its
first export to the child) and the child adopts it from a full file.

The file is a zip holding ``manifest.json`` and ``document.jxl`` (the exchange document);
the manifest carries the document's SHA-256. Zip because every office PC opens it
without tools (users can look inside), it has a CRC per member on top of the digest,
and Python reads it from the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import exchange
from .auth import TokenLike
from .errors import ExchangeFormatError, SyncRefused
from .idblocks import JOB_ID_BLOCK, block_ends, claim_block, int_or_none, node_rows
from .membership import check_child, check_parent, node_row, same_name
from .replica import Replica, ReplicaFactory, default_replica_factory
from .report import id_changes

__all__ = [
    "FORMAT",
    "ExportOutcome",
    "FileRefused",
    "ImportOutcome",
    "Manifest",
    "export_job_data",
    "import_job_data",
    "read_file",
]

FORMAT = "wmsync-file/1"
MANIFEST = "manifest.json"
DOCUMENT = "document.jxl"
_MANIFEST_LIMIT = 1024 * 1024
_CHUNK = 1024 * 1024


class FileRefused(SyncRefused):
    """An exchange file that cannot be imported; nothing was changed."""


@dataclass
class Manifest:
    """What a file says about itself; ``ack`` is the source's ``peerGen`` of the peer."""

    source: str
    peer: str
    cluster: str  # the parent's name
    source_role: str  # "parent" or "child"
    generation: int
    since_gen: int
    sync_id: Optional[str]
    ack: int
    count: int
    sha256: str
    size: int
    registration: Optional[Dict[str, Any]] = None  # the child's row: jobIdStart, ...
    exported: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT,
            "source": self.source,
            "peer": self.peer,
            "cluster": self.cluster,
            "sourceRole": self.source_role,
            "generation": self.generation,
            "sinceGen": self.since_gen,
            "syncId": self.sync_id,
            "ack": self.ack,
            "count": self.count,
            "sha256": self.sha256,
            "size": self.size,
            "registration": self.registration,
            "exported": self.exported,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise FileRefused(f"the manifest is not a {FORMAT} manifest")
        try:
            role = str(data["sourceRole"])
            if role not in ("parent", "child"):
                raise ValueError(role)
            registration = data.get("registration")
            if registration is not None and not isinstance(registration, Mapping):
                raise ValueError("registration")
            sync_id = data.get("syncId")
            return cls(
                source=_text(data["source"]),
                peer=_text(data["peer"]),
                cluster=_text(data["cluster"]),
                source_role=role,
                generation=_count(data["generation"]),
                since_gen=_count(data["sinceGen"]),
                sync_id=None if sync_id is None else _text(sync_id),
                ack=_count(data["ack"]),
                count=_count(data["count"]),
                sha256=_text(data["sha256"]),
                size=_count(data["size"]),
                registration=dict(registration) if registration else None,
                exported=str(data.get("exported") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FileRefused(f"the manifest is incomplete or malformed ({exc})") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(repr(value))
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(repr(value))
    return int(value)


@dataclass
class ExportOutcome:
    path: str
    manifest: Manifest
    registered: bool = False

    def line(self) -> str:
        m = self.manifest
        text = (
            f"{m.source} -> {m.peer}: {m.count} elements (generations {m.since_gen}"
            f"-{m.generation}), acknowledging {m.peer}'s changes up to {m.ack}"
        )
        if self.registered:
            text += f"; registered {m.peer} with job ids from {_block_start(m)}"
        return text


def _block_start(manifest: Manifest) -> Any:
    return (manifest.registration or {}).get("jobIdStart")


@dataclass
class ImportOutcome:
    manifest: Manifest
    target: str
    received: int = 0
    conflicts: List[Any] = field(default_factory=list)
    renumbered: int = 0
    warnings: List[str] = field(default_factory=list)
    already: bool = False  # everything in it was already here
    marks_taken: bool = False
    gap: bool = False  # an earlier file is missing: content taken, peerGen kept
    joined: bool = False
    #: the joining child's own jobs moved into its block: ``[{"guid", "from", "to"}]``
    ids_changed: List[Dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        m = self.manifest
        if self.already:
            return (
                f"{self.target}: the file from {m.source} (generation {m.generation}) "
                f"was already imported; nothing changed"
            )
        text = (
            f"{self.target} <- {m.source}: {self.received} elements, "
            f"{len(self.conflicts)} conflicts"
        )
        if self.joined:
            text += f"; joined the cluster of {m.cluster}"
        if self.ids_changed:
            text += (
                f"; renumbered {len(self.ids_changed)} of its own job(s) into its block "
                f"({id_changes(self.ids_changed)})"
            )
        if self.gap:
            text += f"; an earlier file from {m.source} is missing: it will send it again"
        elif not self.marks_taken:
            text += "; the pair is being (re)established: watermarks not moved"
        return text


# ---------------------------------------------------------------------------
# Export


def _factory(
    replica_factory: Optional[ReplicaFactory],
    user: Optional[str],
    token: TokenLike,
    timeout: float,
    verify: Any,
) -> ReplicaFactory:
    return replica_factory or default_replica_factory(
        user=user, token=token, timeout=timeout, verify=verify
    )


def _own_name(info: Mapping[str, Any], replica: Replica) -> str:
    name = str(info.get("repository") or "")
    if not name:
        raise SyncRefused(f"the server at {replica.display_url} does not report its name")
    return name


def export_job_data(
    url: str,
    peer: str,
    out: str,
    *,
    register_child: bool = False,
    child_url: str = "",
    user: Optional[str] = None,
    token: TokenLike = None,
    replica_factory: Optional[ReplicaFactory] = None,
    timeout: float = 60.0,
    verify: Any = True,
) -> ExportOutcome:
    """Write the file of the changes *peer* has not acknowledged (docs/design.md §11).

    :param out: the file to write, or a folder to write it into (named after the pair).
    :param register_child: *url* is the parent and *peer* a child not yet in its node
        table: register it (row and job id block); the file carries its registration.
    :raises SyncRefused: the peer is unknown, or membership forbids the exchange.
    """
    factory = _factory(replica_factory, user, token, timeout, verify)
    replica = factory(url)
    try:
        info = replica.replication_info()
        me = _own_name(info, replica)
        if same_name(peer, me):
            raise SyncRefused(f"{peer} is this repository itself")
        row = node_row(info, peer)
        registered = False
        if row is None:
            if not register_child:
                raise SyncRefused(
                    f"{peer} is not in the node table of {me}; to join a new child by "
                    f"file, export from its parent with --register-child"
                )
            check_parent(info, me)
            info = _register_child(replica, info, me, url, peer, child_url)
            row = node_row(info, peer)
            registered = True
            assert row is not None
        peer = str(row.get("name"))
        is_parent = bool(row.get("isParent"))
        if not is_parent:
            check_parent(info, me)
        sync_id = row.get("syncId") or None
        if sync_id is None and not is_parent:
            # The parent owns the pair's syncId: made now, adopted by the child.
            sync_id = secrets.token_hex(8)
            replica.update_node(peer, sync_id=sync_id)
        trusted = bool(row.get("syncId"))
        since = (int_or_none(row.get("lastSyncGen")) or 0) if trusted else 0
        registration = None
        if not is_parent:
            registration = {
                "child": peer,
                "jobIdStart": int_or_none(row.get("jobIdStart")),
                "jobIdBlock": int_or_none(row.get("jobIdBlock")) or JOB_ID_BLOCK,
                "parentURL": url.rstrip("/"),
            }
        else:
            own = node_row(info, me) or {}
            registration = {
                "child": me,
                "jobIdStart": int_or_none(own.get("jobIdStart")),
                "jobIdBlock": int_or_none(own.get("jobIdBlock")) or JOB_ID_BLOCK,
            }
        with tempfile.TemporaryDirectory(prefix="wmsync-file-") as work:
            document = os.path.join(work, DOCUMENT)
            export = replica.export(since, peer if trusted else None)
            left_out = list(getattr(export, "skipped", None) or ())
            if left_out:
                # A file's generation moves the peer's mark past everything it covers,
                # so a file cannot leave an element out and have it retried: none is made.
                raise SyncRefused(
                    f"{me}: {len(left_out)} element(s) cannot travel; change them and "
                    "export again: " + "; ".join(e.describe() for e in left_out)
                )
            with open(document, "wb") as handle:
                replica.download(export.jxl_url, handle)
            header, count = exchange.validate_file(document)
            if header.generation != int(export.generation) or not same_name(header.repository, me):
                raise SyncRefused(f"the export of {me} does not match what the server announced")
            digest, size = _digest(document)
            manifest = Manifest(
                source=me,
                peer=peer,
                cluster=peer if is_parent else me,
                source_role="child" if is_parent else "parent",
                generation=header.generation,
                since_gen=header.since_gen,
                sync_id=sync_id,
                ack=int_or_none(row.get("peerGen")) or 0 if trusted else 0,
                count=count,
                sha256=digest,
                size=size,
                registration=registration,
                exported=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            path = _target_path(out, manifest)
            _write_zip(path, manifest, document)
        return ExportOutcome(path, manifest, registered)
    finally:
        replica.close()


def _register_child(
    parent: Replica,
    info: Mapping[str, Any],
    me: str,
    url: str,
    child: str,
    child_url: str,
) -> Dict[str, Any]:
    """The parent's own row and block (as a run would make them), then the child's."""
    own = node_row(info, me)
    if own is None or int_or_none(own.get("jobIdStart")) is None:
        parent.update_node(
            me,
            server_url=url.rstrip("/"),
            is_parent=True,
            is_connected=True,
            job_id_start=1,
            job_id_block=JOB_ID_BLOCK,
        )
        info = parent.replication_info()
    block = max([1 + JOB_ID_BLOCK, *block_ends(node_rows(info))])
    claim_block(parent, child, child_url, block)
    # A child joined by file is not reachable from the parent: say so in its row.
    parent.update_node(child, is_connected=False)
    return dict(parent.replication_info())


def _target_path(out: str, manifest: Manifest) -> str:
    if os.path.isdir(out):
        name = f"{manifest.source}_to_{manifest.peer}_{manifest.generation}.zip"
        return os.path.join(out, name)
    return out


def _digest(path: str) -> Tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _write_zip(path: str, manifest: Manifest, document: str) -> None:
    """Write the file next to *path* and move it in place: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".wmsync-", suffix=".partial", dir=folder)
    os.close(fd)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
            archive.write(document, DOCUMENT)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


# ---------------------------------------------------------------------------
# Reading and checking a file


def read_file(path: str, document_out: str) -> Manifest:
    """Check a file and extract its document to *document_out*.

    :raises FileRefused: not such a file, altered, truncated or inconsistent.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if names != {MANIFEST, DOCUMENT}:
                raise FileRefused(
                    f"{os.path.basename(path)} is not a WorkflowSync exchange file "
                    f"(members {sorted(names)})"
                )
            if archive.getinfo(MANIFEST).file_size > _MANIFEST_LIMIT:
                raise FileRefused("the manifest is too large")
            try:
                data = json.loads(archive.read(MANIFEST).decode("utf-8"))
            except ValueError:
                raise FileRefused("the manifest is not valid JSON") from None
            manifest = Manifest.from_dict(data)
            sha = hashlib.sha256()
            size = 0
            with archive.open(DOCUMENT) as source, open(document_out, "wb") as dest:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    size += len(chunk)
                    if size > manifest.size:
                        break
                    sha.update(chunk)
                    dest.write(chunk)
    except FileNotFoundError:
        raise FileRefused(f"{path} does not exist") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise FileRefused(
            f"{os.path.basename(path)} is damaged or truncated, or not a WorkflowSync "
            f"exchange file ({exc})"
        ) from None
    if size != manifest.size or sha.hexdigest() != manifest.sha256:
        raise FileRefused(
            f"{os.path.basename(path)} was altered or damaged: its document does not match "
            f"the SHA-256 digest in its manifest"
        )
    try:
        header, count = exchange.validate_file(document_out)
    except ExchangeFormatError as exc:
        raise FileRefused(f"its document is not a valid exchange document: {exc}") from None
    if (
        not same_name(header.repository, manifest.source)
        or header.generation != manifest.generation
        or header.since_gen != manifest.since_gen
        or count != manifest.count
    ):
        raise FileRefused("its document and its manifest disagree")
    return manifest


# ---------------------------------------------------------------------------
# Import


def import_job_data(
    url: str,
    path: str,
    *,
    user: Optional[str] = None,
    token: TokenLike = None,
    replica_factory: Optional[ReplicaFactory] = None,
    timeout: float = 60.0,
    verify: Any = True,
) -> ImportOutcome:
    """Import an exchange file into the repository at *url* and take its marks.

    Every check happens before anything is written: a file that is altered, truncated,
    meant for another repository or from another cluster changes nothing.

    :raises FileRefused: the file cannot be imported here.
    """
    factory = _factory(replica_factory, user, token, timeout, verify)
    with tempfile.TemporaryDirectory(prefix="wmsync-file-") as work:
        document = os.path.join(work, DOCUMENT)
        manifest = read_file(path, document)
        replica = factory(url)
        try:
            info = replica.replication_info()
            me = _own_name(info, replica)
            plan = _check_membership(manifest, info, me)
            return _apply(replica, manifest, plan, document, me, work)
        finally:
            replica.close()


@dataclass
class _Plan:
    row: Optional[Mapping[str, Any]]  # this side's node row of the source
    join: bool = False  # a child joining by this file
    adopt: bool = False  # the child takes the parent's syncId (and restarts its marks)
    trusted: bool = False  # syncIds match: the marks may move


def _check_membership(manifest: Manifest, info: Mapping[str, Any], me: str) -> _Plan:
    if not same_name(manifest.peer, me):
        raise FileRefused(
            f"the file is meant for {manifest.peer}, not for {me} (it came from {manifest.source})"
        )
    if same_name(manifest.source, me):
        raise FileRefused(f"the file came from {me} itself")
    row = node_row(info, manifest.source)
    if manifest.source_role == "parent":
        if not same_name(manifest.cluster, manifest.source):
            raise FileRefused("the manifest names a cluster that is not its source's")
        if row is not None and not row.get("isParent"):
            raise FileRefused(
                f"{manifest.source} is a child of {me} here, but the file comes from it as "
                f"a parent: it is from another cluster"
            )
        try:
            check_child(info, me, manifest.source)
        except SyncRefused as exc:
            raise FileRefused(
                f"the file is from the cluster of {manifest.cluster}, but {me} {exc}"
            ) from None
        registration = manifest.registration or {}
        if (
            not same_name(str(registration.get("child") or ""), me)
            or int_or_none(registration.get("jobIdStart")) is None
        ):
            raise FileRefused(f"the file carries no registration of {me}")
        own = node_row(info, me)
        held = int_or_none(own.get("jobIdStart")) if own else None
        if held is not None and row is not None and held != registration["jobIdStart"]:
            raise FileRefused(
                f"{me} holds job ids from {held} in this cluster, the file from "
                f"{registration['jobIdStart']}: it is from another registration"
            )
        plan = _Plan(row, join=row is None)
        current = row.get("syncId") if row else None
        if manifest.sync_id and current == manifest.sync_id:
            plan.trusted = True
        elif manifest.sync_id and manifest.since_gen == 0:
            # A full file of a new pairing: the child takes its syncId, marks restart.
            plan.adopt = plan.trusted = True
        return plan
    # The source is a child: this repository must be its parent.
    if not same_name(manifest.cluster, me):
        raise FileRefused(
            f"the file is from the cluster of {manifest.cluster}, and {me} is not its "
            f"parent: it is from another cluster"
        )
    if row is None or row.get("isParent"):
        raise FileRefused(
            f"{manifest.source} is not a child of {me}: it is from another "
            f"cluster, or the child was removed"
        )
    check_parent(info, me)
    held = int_or_none(row.get("jobIdStart"))
    sent = int_or_none((manifest.registration or {}).get("jobIdStart"))
    if sent is not None and held is not None and sent != held:
        raise FileRefused(
            f"{manifest.source} uses job ids from {sent}, but {me} registered it with "
            f"{held}: it is from another registration of that child"
        )
    current = row.get("syncId")
    return _Plan(row, trusted=bool(manifest.sync_id) and current == manifest.sync_id)


def _apply(
    replica: Replica,
    manifest: Manifest,
    plan: _Plan,
    document: str,
    me: str,
    work: str,
) -> ImportOutcome:
    outcome = ImportOutcome(manifest, me, joined=plan.join)
    source = manifest.source
    if plan.adopt or plan.join:
        if plan.row is not None:
            replica.reset_node(str(plan.row.get("name")))
        registration = manifest.registration or {}
        start = int_or_none(registration.get("jobIdStart"))
        if plan.join and start is not None:
            # Before its rows are written, as a connected join does: if this fails, the
            # next import of the file is still a join and finishes it.
            outcome.ids_changed = replica.renumber_own_jobs(
                me,
                source,
                start,
                int_or_none(registration.get("jobIdBlock")) or JOB_ID_BLOCK,
            )
        replica.update_node(
            source,
            server_url=str(registration.get("parentURL") or ""),
            is_parent=True,
            is_connected=False,
            sync_id=manifest.sync_id,
        )
        replica.update_node(
            me,
            is_parent=False,
            is_connected=True,
            job_id_start=int_or_none(registration.get("jobIdStart")),
            job_id_block=int_or_none(registration.get("jobIdBlock")) or JOB_ID_BLOCK,
        )
        held = 0
    else:
        held = (int_or_none(plan.row.get("peerGen")) if plan.row else None) or 0
    if plan.trusted and manifest.generation <= held and not plan.adopt:
        outcome.already, outcome.marks_taken = True, True
    elif manifest.count:
        packed = os.path.join(work, DOCUMENT + ".gz")
        exchange.gzip_file(document, packed, compresslevel=1)
        answer = replica.import_document(packed, merge=True, gzip=True)
        outcome.received = manifest.count
        outcome.conflicts = list(answer.get("conflicts") or [])
        outcome.renumbered = len(answer.get("renumbered") or [])
        outcome.warnings = [str(w) for w in answer.get("warnings") or []]
    if not plan.trusted:
        row = plan.row
        if (
            manifest.source_role == "child"
            and row is not None
            and (manifest.sync_id or int_or_none(row.get("lastSyncGen")))
        ):
            # The child speaks of another pairing (restored, or the pair changed
            # meanwhile): the parent's next file is a full one with a new syncId.
            replica.reset_node(str(row.get("name")))
        return outcome
    outcome.marks_taken = True
    contiguous = manifest.since_gen <= held
    outcome.gap = not contiguous
    replica.update_node(
        source if plan.row is None else str(plan.row.get("name")),
        peer_gen=manifest.generation if contiguous else None,
        last_sync_gen=manifest.ack or None,
        stamp_last_sync=manifest.source_role == "child" and not outcome.already,
    )
    return outcome
