"""Replication: info, nodes, conflicts, export (and its download) and import; handlers of
:class:`~wmsync.emulator.app.WMServerApp` (a base class of it)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict
from urllib.parse import urlsplit

import requests
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from wmsync import exchange
from wmsync.errors import ExchangeFormatError
from wmsync.repository.store import ImportRefused, Store

from .envelope import BadRequest, NotFound
from .routes import Call

if TYPE_CHECKING:
    from .app import EmulatorConfig

EXTENSIONS = ["wmsync-replication/1"]

_EXPORT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CHUNK = 1024 * 1024
#: zlib level of gzip-served exports: 1 makes the XML about 9x smaller at about 7 ms per
#: MB; level 6 is only about 10 % smaller still, for three times the CPU.
EXPORT_GZIP_LEVEL = 1


class ReplicationApi:
    """The replication extensions (a base class of
    :class:`~wmsync.emulator.app.WMServerApp`)."""

    if TYPE_CHECKING:  # what the handlers use of WMServerApp, for the type checker
        config: EmulatorConfig
        store: Store
        export_dir: Path
        spool_dir: Path

        @property
        def repository(self) -> str: ...

    # -- replication --------------------------------------------------------------------

    def on_replication_info(self, call: Call) -> Dict[str, Any]:
        call.user()
        with self.store.reading() as s:
            return {
                "repository": self.repository,
                "generation": s.generation(),
                "extensions": EXTENSIONS,
                "nodes": [n.to_dict() for n in s.nodes()],
            }

    def on_node_update(self, call: Call) -> Dict[str, Any]:
        call.user()
        node = self.store.update_node(
            call.required("name").strip(),
            server_url=call.text("serverURL"),
            description=call.text("description"),
            is_parent=None if call.text("isParent") is None else call.boolean("isParent"),
            is_connected=None
            if call.text("isConnected") is None
            else call.boolean("isConnected"),
            last_sync_gen=call.integer("lastSyncGen"),
            sync_id=call.text("syncId") or None,
            stamp_last_sync=call.boolean("stampLastSync"),
            job_id_start=call.integer("jobIdStart"),
            job_id_block=call.integer("jobIdBlock"),
        )
        return {"success": True, "lastSync": node.last_sync}

    def on_node_reset(self, call: Call) -> Dict[str, Any]:
        call.user()
        name = call.required("name").strip()
        if not self.store.reset_node(name):
            raise NotFound(f"Node {name} does not exist")
        return {"success": True}

    def on_conflicts(self, call: Call) -> Dict[str, Any]:
        call.user()
        return {"conflicts": self.store.conflicts(call.integer("sinceGen"))}

    def on_export(self, call: Call) -> Dict[str, Any]:
        call.user()
        since_gen = call.integer("sinceGen") or 0
        if since_gen < 0:
            raise BadRequest("Invalid value for parameter sinceGen", ["sinceGen"])
        self._prune_exports()
        info = self.store.export(self.export_dir, since_gen, call.text("excludeVia") or None)
        return {
            "jxlURL": f"{call.root}/replication/exports/{info.export_id}.jxl",
            "generation": info.generation,
            "sinceGen": info.since_gen,
            "exportTime": info.export_time,
            "count": info.count,
        }

    def _prune_exports(self) -> None:
        keep = max(self.config.export_keep_seconds, 3600.0)
        limit = time.time() - keep
        for path in [*self.export_dir.glob("*.jxl"), *self.export_dir.glob("*.jxl.gz")]:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                pass

    def on_export_file(self, call: Call, export_file: str) -> Response:
        export_id, _, suffix = export_file.lower().partition(".")
        if suffix != "jxl" or not _EXPORT_ID_RE.match(export_id):
            raise NotFound(f"Export {export_file} does not exist")
        path = self.export_dir / f"{export_id}.jxl"
        packed = (
            self.config.gzip_exports and call.request.accept_encodings.quality("gzip") > 0
        )
        try:
            handle = open(self._gzipped(path) if packed else path, "rb")
        except FileNotFoundError:
            raise NotFound(f"Export {export_file} does not exist") from None
        size = os.fstat(handle.fileno()).st_size
        body = wrap_file(call.request.environ, handle)
        response = Response(body, mimetype="application/xml", direct_passthrough=True)
        response.content_length = size  # of what is sent: the compressed bytes
        response.headers["Vary"] = "Accept-Encoding"
        if packed:
            response.headers["Content-Encoding"] = "gzip"
        return response

    @staticmethod
    def _gzipped(path: Path) -> Path:
        """The gzip copy of an export, written the first time it is asked for (to a
        temporary name, then renamed, so concurrent downloads never see half of it).

        :raises FileNotFoundError: there is no such export.
        """
        packed = path.with_name(path.name + ".gz")
        if packed.is_file():
            return packed
        partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
        try:
            exchange.gzip_file(str(path), str(partial), compresslevel=EXPORT_GZIP_LEVEL)
            os.replace(partial, packed)
        finally:
            if partial.exists():
                partial.unlink()
        return packed

    def on_import(self, call: Call) -> Dict[str, Any]:
        call.user()
        if not call.boolean("merge", True):
            raise BadRequest("merge=false (replace) is not supported by the emulator", ["merge"])
        spool = tempfile.NamedTemporaryFile(
            dir=self.spool_dir, suffix=".jxl", delete=False
        )
        try:
            with spool:
                self._receive_document(call, spool)
            try:
                result = self.store.import_file(
                    spool.name, max_bytes=self.config.max_document_bytes
                )
            except ExchangeFormatError as error:
                details = []
                if error.line is not None:
                    details.append(f"line {error.line}")
                if error.element:
                    details.append(f"element {error.element}")
                # the location goes in the details only (it was shown twice)
                raise BadRequest(
                    f"Invalid exchange document: {error.reason}", details
                ) from None
            except ImportRefused as error:
                raise BadRequest(f"Document refused: {error}") from None
        finally:
            os.unlink(spool.name)
        return result.to_dict()

    def _receive_document(self, call: Call, spool: Any) -> None:
        request = call.request
        limit = self.config.max_content_length
        if request.mimetype == "multipart/form-data":
            part = request.files.get("jxl")
            if part is None:
                raise BadRequest("Missing required parameter: jxl (file part)", ["jxl"])
            shutil.copyfileobj(part.stream, spool, _CHUNK)
            return
        url = call.text("jxlURL") or call.text("jtxURL")
        if url:
            self._fetch(call, url, spool)
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

    def _fetch(self, call: Call, url: str, spool: Any) -> None:
        """Fetch a ``jxlURL`` from this server's own host or loopback only."""
        parts = urlsplit(url)
        own_host = urlsplit(call.request.host_url).hostname
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or (
            host not in _LOOPBACK and host != own_host
        ):
            raise BadRequest("jxlURL must point to this server or to loopback", ["jxlURL"])
        own_exports = f"{call.root}/replication/exports/".lower()
        if url.lower().startswith(own_exports):
            name = url[len(own_exports):].split("?")[0].lower()
            export_id = name[:-4] if name.endswith(".jxl") else ""
            path = self.export_dir / f"{export_id}.jxl"
            if not _EXPORT_ID_RE.match(export_id) or not path.is_file():
                raise BadRequest("jxlURL names no export of this server", ["jxlURL"])
            with open(path, "rb") as source:
                shutil.copyfileobj(source, spool, _CHUNK)
            return
        try:
            with requests.get(
                url, stream=True, timeout=self.config.fetch_timeout, allow_redirects=False
            ) as answer:
                if answer.status_code != 200:
                    raise BadRequest(f"jxlURL answered HTTP {answer.status_code}", ["jxlURL"])
                total = 0
                for chunk in answer.iter_content(_CHUNK):
                    total += len(chunk)
                    if total > self.config.max_content_length:
                        raise BadRequest("Document too large")
                    spool.write(chunk)
        except requests.RequestException:
            raise BadRequest("jxlURL could not be fetched", ["jxlURL"]) from None
