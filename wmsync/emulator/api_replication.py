"""Handlers of replication: info, nodes, conflicts, export (and its download), import.

Every handler is a plain function ``handler(ctx, call, **path_values)``;
:mod:`~wmsync.emulator.routes` names them. Esri documents ``replication/info`` (the node
list) and ``replication/import``; the rest, and the extra keys of ``info``, are the
WorkflowSync extensions. :func:`replication_info` and :func:`import_refused` are what
stock mode answers instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import requests
from werkzeug.wrappers import Response

from wmsync.errors import ExchangeFormatError
from wmsync.repository.renumbering import held_job_ids, renumber_own_jobs, renumber_reused_ids
from wmsync.repository.store import (
    ImportRefused,
    UnknownPeer,
    chunk_cursor,
    highest_own_counter,
)

from .call import Call
from .context import Context
from .envelope import BadRequest, NotFound

#: The marker of the extended server in ``replication/info``.
EXTENSIONS = ["wmsync-replication/1"]

#: The node keys Esri documents in ``replication/info``.
_DOCUMENTED_NODE_KEYS = (
    "id",
    "name",
    "description",
    "serverURL",
    "isParent",
    "isConnected",
    "lastSync",
)
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CHUNK = 1024 * 1024


# -- info, nodes, conflicts ---------------------------------------------------------


def replication_info(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/info`` as Esri documents it: the node list only (a repository's
    row for itself, where its id block is kept, is bookkeeping and not listed)."""
    call.user()
    with ctx.store.reading() as s:
        return {
            "nodes": [
                {key: value for key, value in n.to_dict().items() if key in _DOCUMENTED_NODE_KEYS}
                for n in s.nodes()
                if n.name != ctx.repository
            ]
        }


def replication_info_extended(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/info`` with the extension marker, generation and watermarks, the
    repository's ``instanceId``, ``incarnation`` and highest own counter
    (``ownCounter``; read from the store's mark and the rows written since, left out with
    ``ownCounter=false``),
    per node row with a job id block the highest job id held in it (``jobIdHigh``), and
    per parent row (``isParent``, not its own) the changes waiting for it (``pending``)."""
    call.user()
    with_counter = call.boolean("ownCounter", default=True)
    with ctx.store.reading() as s:
        nodes = [n.to_dict() for n in s.nodes()]
        for node in nodes:
            if node.get("isParent") and node["name"] != ctx.repository:
                # What an export from this row's watermark, cut by its name, would
                # hold now: a client that finds 0 asks for no export (docs/protocol.md).
                node["pending"] = s.count_since(node.get("lastSyncGen") or 0, node["name"])
            if node.get("jobIdStart") is not None:
                row = s.conn.execute(
                    "SELECT MAX(local_id) FROM elements WHERE kind = 'Job' "
                    "AND local_id >= ? AND local_id < ?",
                    (node["jobIdStart"], node["jobIdStart"] + (node["jobIdBlock"] or 1)),
                ).fetchone()
                node["jobIdHigh"] = row[0]
        answer = {
            "repository": ctx.repository,
            "generation": s.generation(),
            "instanceId": s.meta("instance") or "",
            "incarnation": s.incarnation(),
            "extensions": EXTENSIONS,
            "nodes": nodes,
        }
        if with_counter:
            answer["ownCounter"] = highest_own_counter(s)
        return answer


def node_update(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    node = ctx.store.update_node(
        call.required("name").strip(),
        server_url=call.text("serverURL"),
        description=call.text("description"),
        is_parent=None if call.text("isParent") is None else call.boolean("isParent"),
        is_connected=None if call.text("isConnected") is None else call.boolean("isConnected"),
        last_sync_gen=call.integer("lastSyncGen"),
        sync_id=call.text("syncId") or None,
        stamp_last_sync=call.boolean("stampLastSync"),
        job_id_start=call.integer("jobIdStart"),
        job_id_block=call.integer("jobIdBlock"),
        peer_gen=call.integer("peerGen"),
        sync_seq=call.integer("syncSeq"),
        peer_seq=call.integer("peerSeq"),
        peer_instance=call.text("peerInstance") or None,
        peer_gen_seen=call.integer("peerGenSeen"),
        peer_counter_seen=call.text("peerCounterSeen") or None,
    )
    return {"success": True, "lastSync": node.last_sync}


def new_incarnation(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/incarnation``: this repository went back in time (restored or
    rebuilt); take a new incarnation and re-stamp what it changed after ``sinceGen``."""
    call.user()
    since_gen = call.integer("sinceGen") or 0
    if since_gen < 0:
        raise BadRequest("Invalid value for parameter sinceGen", ["sinceGen"])
    answer = ctx.store.new_incarnation(since_gen, call.integer("jobIdFloor"))
    return {"success": True, **answer}


def renumber(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/renumber``: a joining child's own jobs move into its id block
    (``jobIdStart``, ``jobIdBlock``), in one transaction; ``dryRun=true`` only answers
    what would move. ``name`` (optional) must be this repository's own name.

    With ``jobIdHigh`` (the highest id the cluster has seen in the block) it is the
    went-back mode instead: the jobs this repository made after ``sinceGen`` with ids
    up to ``jobIdHigh`` are the candidates (``dryRun=true`` lists them), and those named
    in ``guids`` (comma-separated) move past ``jobIdHigh``."""
    user = call.user()
    name = call.text("name")
    if name is not None and name.strip().lower() != ctx.repository.lower():
        raise BadRequest(
            f"Invalid value for parameter name: this repository is {ctx.repository}", ["name"]
        )
    start, size = _positive(call, "jobIdStart"), _positive(call, "jobIdBlock")
    dry_run = call.boolean("dryRun")
    high = call.integer("jobIdHigh")
    if high is not None:
        return _renumber_reused(ctx, call, user, start, size, high, dry_run)
    peer = call.required("peer").strip()
    try:
        if dry_run:
            with ctx.store.reading() as s:
                done = renumber_own_jobs(s, start, size, peer, user, dry_run=True)
        else:
            with ctx.store.atomic() as s:
                done = renumber_own_jobs(s, start, size, peer, user)
    except ValueError as error:
        raise BadRequest(f"Cannot renumber: {error}", ["jobIdBlock"]) from None
    return {"success": True, "dryRun": dry_run, "renumbered": done}


def _renumber_reused(
    ctx: Context, call: Call, user: str, start: int, size: int, high: int, dry_run: bool
) -> Dict[str, Any]:
    since_gen = call.integer("sinceGen") or 0
    if since_gen < 0:
        raise BadRequest("Invalid value for parameter sinceGen", ["sinceGen"])
    listed = call.text("guids")
    if listed is None and not dry_run:
        raise BadRequest("Missing required parameter: guids", ["guids"])
    guids = None if listed is None else [g.strip() for g in listed.split(",") if g.strip()]
    try:
        if dry_run:
            with ctx.store.reading() as s:
                done = renumber_reused_ids(s, start, size, high, since_gen, user, dry_run=True)
        else:
            with ctx.store.atomic() as s:
                done = renumber_reused_ids(s, start, size, high, since_gen, user, guids=guids)
    except ValueError as error:
        raise BadRequest(f"Cannot renumber: {error}", ["jobIdHigh"]) from None
    return {"success": True, "dryRun": dry_run, "renumbered": done}


def job_ids(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/jobids``: the highest job id held in a block (``jobIdStart``,
    ``jobIdBlock``; tombstones too) and the GUID of the job held at each of ``ids``
    (comma-separated)."""
    call.user()
    start, size = _positive(call, "jobIdStart"), _positive(call, "jobIdBlock")
    try:
        ids = [int(text) for text in (call.text("ids") or "").split(",") if text.strip()]
    except ValueError:
        raise BadRequest("Invalid value for parameter ids: comma-separated ids", ["ids"]) from None
    with ctx.store.reading() as s:
        highest, held = held_job_ids(s, start, size, ids)
    return {"highest": highest, "jobs": {str(k): v for k, v in held.items()}}


def _positive(call: Call, key: str) -> int:
    value = call.integer(key)
    if value is None or value < 1:
        raise BadRequest(f"Invalid value for parameter {key}: a positive integer", [key])
    return value


def node_reset(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    name = call.required("name").strip()
    if not ctx.store.reset_node(name):
        raise NotFound(f"Node {name} does not exist")
    return {"success": True}


def node_delete(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/nodes/delete`` (extension): remove a node row; jobs stay."""
    call.user()
    name = call.required("name").strip()
    if not ctx.store.delete_node(name):
        raise NotFound(f"Node {name} does not exist")
    return {"success": True}


def conflicts(ctx: Context, call: Call) -> Dict[str, Any]:
    call.user()
    return {"conflicts": ctx.store.conflicts(call.integer("sinceGen"))}


# -- export ------------------------------------------------------------------------


def export(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/export``: write a document and answer its URL; with
    ``countOnly=true`` only count what it would hold (no file)."""
    call.user()
    since_gen = call.integer("sinceGen") or 0
    if since_gen < 0:
        raise BadRequest("Invalid value for parameter sinceGen", ["sinceGen"])
    exclude_via = call.text("excludeVia") or None
    ctx.exports.sweep()
    if call.boolean("countOnly"):
        return _count(ctx, since_gen, exclude_via, _names(call, "excludeEachVia"))
    # A split export (docs/protocol.md): at most maxCount elements, up to untilGen,
    # after the cursor the previous chunk answered.
    max_count = call.integer("maxCount")
    until_gen = call.integer("untilGen")
    if max_count is not None and max_count < 1:
        raise BadRequest("Invalid value for parameter maxCount", ["maxCount"])
    after = call.text("after") or None
    try:
        if after is not None:
            chunk_cursor(after)  # checked here, so no other ValueError is blamed on it
    except ValueError:
        raise BadRequest("Invalid value for parameter after", ["after"]) from None
    marks = _sequence_marks(call, "syncSeq")
    info = ctx.store.export(
        ctx.exports.path,
        since_gen,
        exclude_via,
        until_gen=until_gen,
        max_count=max_count,
        after=after,
    )
    answer: Dict[str, Any] = {
        "jxlURL": f"{call.root}/replication/exports/{info.export_id}.jxl",
        "generation": info.generation,
        "sinceGen": info.since_gen,
        "exportTime": info.export_time,
        "count": info.count,
    }
    if max_count is not None:
        answer["more"] = info.more
        if info.after:
            answer["after"] = info.after
    if info.skipped:  # elements that cannot travel, left out (docs/protocol.md)
        answer["skipped"] = [entry.to_dict() for entry in info.skipped]
    if marks is not None:
        # The sender's sequence bump of the rows named, after the export's read and
        # only when it holds something to import (docs/protocol.md, "syncSeq").
        answer["syncSeqMarked"] = ctx.store.mark_sync_seqs(marks) if info.count else []
    return answer


def _json_param(call: Call, name: str, valid: Callable[[Any], bool]) -> Any:
    """A parameter holding JSON that *valid* accepts, or ``None`` when absent; anything
    else is a 400 naming it."""
    text = call.text(name)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not valid(value):
        raise BadRequest(f"Invalid value for parameter {name}", [name])
    return value


def _sequence_marks(call: Call, name: str) -> Optional[Dict[str, int]]:
    """A parameter holding a JSON object of node-row names and positive sequence
    numbers, or ``None`` when absent."""

    def valid(marks: Any) -> bool:
        return isinstance(marks, dict) and all(
            isinstance(k, str) and k and type(v) is int and v > 0 for k, v in marks.items()
        )

    marks: Optional[Dict[str, int]] = _json_param(call, name, valid)
    return marks


def _names(call: Call, name: str) -> Optional[List[str]]:
    """A parameter holding a JSON array of repository names, or ``None`` when absent."""

    def valid(names: Any) -> bool:
        return isinstance(names, list) and all(isinstance(n, str) and n for n in names)

    names: Optional[List[str]] = _json_param(call, name, valid)
    return names


def _count(
    ctx: Context, since_gen: int, exclude_via: Any, each_via: Optional[List[str]]
) -> Dict[str, Any]:
    """The export's count; with *each_via*, also the count of the window cut by each
    of those names (what ``excludeVia=<name>`` would count), in the same snapshot."""
    kinds: Counter[str] = Counter()
    deleted = 0
    with ctx.store.reading() as s:
        generation = s.generation()
        for element in s.elements_since(since_gen, exclude_via):
            kinds[element.kind] += 1
            deleted += 1 if element.deleted else 0
        by_via = s.counts_by_via(since_gen) if each_via is not None else {}
    answer: Dict[str, Any] = {
        "generation": generation,
        "sinceGen": since_gen,
        "count": sum(kinds.values()),
        "counts": dict(sorted(kinds.items())),
        "deleted": deleted,
    }
    if each_via is not None:
        answer["excludingEach"] = {
            name: sum(n for via, n in by_via.items() if via != name) for name in each_via
        }
    return answer


def export_file(ctx: Context, call: Call, export_file: str) -> Response:
    """``GET replication/exports/<id>.jxl``: the document, streamed (gzip-compressed to
    a client that accepts it); removed once sent completely."""
    export_id, _, suffix = export_file.lower().partition(".")
    packed = ctx.config.gzip_exports and call.request.accept_encodings.quality("gzip") > 0
    try:
        if suffix != "jxl":
            raise FileNotFoundError(export_file)
        body, size = ctx.exports.open_download(export_id, packed)
    except FileNotFoundError:
        raise NotFound(f"Export {export_file} does not exist") from None
    response = Response(body, mimetype="application/xml", direct_passthrough=True)
    response.content_length = size  # of what is sent: the compressed bytes
    response.headers["Vary"] = "Accept-Encoding"
    if packed:
        response.headers["Content-Encoding"] = "gzip"
    return response


# -- import ------------------------------------------------------------------------


def import_refused(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/import`` of a stock server: it cannot read this project's
    documents (Esri's format is not public), so every document is refused."""
    call.user()
    raise BadRequest("Invalid exchange document: this server cannot read it")


def import_document(ctx: Context, call: Call) -> Dict[str, Any]:
    """``replication/import``: one transaction; an invalid document changes nothing.

    With ``peer`` and ``peerSeq`` (extensions), the node row of ``peer`` records
    ``peerSeq`` in the import's transaction (:meth:`Store.import_file`)."""
    call.user()
    if not call.boolean("merge", True):
        raise BadRequest("merge=false (replace) is not supported by the emulator", ["merge"])
    peer, peer_seq = _peer_mark(call)
    spool = tempfile.NamedTemporaryFile(dir=ctx.spool_dir, suffix=".jxl", delete=False)
    try:
        with spool:
            _receive_document(ctx, call, spool)
        try:
            result = ctx.store.import_file(
                spool.name,
                max_bytes=ctx.config.max_document_bytes,
                peer=peer,
                peer_seq=peer_seq,
            )
        except ExchangeFormatError as error:
            details = []
            if error.line is not None:
                details.append(f"line {error.line}")
            if error.element:
                details.append(f"element {error.element}")
            # the location goes in the details only (it was shown twice)
            raise BadRequest(f"Invalid exchange document: {error.reason}", details) from None
        except ImportRefused as error:
            raise BadRequest(f"Document refused: {error}") from None
        except UnknownPeer as error:
            raise BadRequest(f"Unknown peer: {error}", ["peer"]) from None
    finally:
        os.unlink(spool.name)
    return result.to_dict()


def _peer_mark(call: Call) -> Tuple[Optional[str], Optional[int]]:
    """``peer`` and ``peerSeq`` of an import: both or neither, a sequence number >= 1."""
    peer = (call.text("peer") or "").strip() or None
    seq = call.integer("peerSeq")
    if (peer is None) != (seq is None):
        raise BadRequest("peer and peerSeq go together: give both or neither", ["peer", "peerSeq"])
    if seq is not None and seq < 1:
        raise BadRequest(f"peerSeq must be 1 or more, not {seq}", ["peerSeq"])
    return peer, seq


def _receive_document(ctx: Context, call: Call, spool: Any) -> None:
    request = call.request
    limit = ctx.config.max_content_length
    if request.mimetype == "multipart/form-data":
        part = request.files.get("jxl")
        if part is None:
            raise BadRequest("Missing required parameter: jxl (file part)", ["jxl"])
        shutil.copyfileobj(part.stream, spool, _CHUNK)
        return
    url = call.text("jxlURL") or call.text("jtxURL")
    if url:
        _fetch(ctx, call, url, spool)
        return
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest("Request too large")
    stream = request.stream
    total = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise BadRequest("Request too large")
        spool.write(chunk)
    if total == 0:
        raise BadRequest("Missing document: send it as the body, a jxl file part or jxlURL")


def _fetch(ctx: Context, call: Call, url: str, spool: Any) -> None:
    """Fetch a ``jxlURL`` from this server's own host or loopback only."""
    parts = urlsplit(url)
    own_host = urlsplit(call.request.host_url).hostname
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or (host not in _LOOPBACK and host != own_host):
        raise BadRequest("jxlURL must point to this server or to loopback", ["jxlURL"])
    own_exports = f"{call.root}/replication/exports/".lower()
    if url.lower().startswith(own_exports):
        name = url[len(own_exports) :].split("?")[0].lower()
        path = ctx.exports.file_of(name[:-4] if name.endswith(".jxl") else "")
        if path is None:
            raise BadRequest("jxlURL names no export of this server", ["jxlURL"])
        with open(path, "rb") as source:
            shutil.copyfileobj(source, spool, _CHUNK)
        return
    try:
        with requests.get(
            url, stream=True, timeout=ctx.config.fetch_timeout, allow_redirects=False
        ) as answer:
            if answer.status_code != 200:
                raise BadRequest(f"jxlURL answered HTTP {answer.status_code}", ["jxlURL"])
            total = 0
            for chunk in answer.iter_content(_CHUNK):
                total += len(chunk)
                if total > ctx.config.max_content_length:
                    raise BadRequest("Document too large")
                spool.write(chunk)
    except requests.RequestException:
        raise BadRequest("jxlURL could not be fetched", ["jxlURL"]) from None
