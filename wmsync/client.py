"""The WMServer REST client: one :class:`WMServerClient` per Workflow Manager server.

It speaks the wire contract of docs/protocol.md and turns every outcome into data or a
:mod:`wmsync.errors` exception. The shape follows requests/httpx:

- :meth:`WMServerClient._send` is the one place that sends. It runs inside
  :func:`wmsync.transport.mapped_errors`, the one context manager that turns every
  requests/urllib3 exception into a wmsync error; :meth:`WMServerClient._request`
  around it makes the token source refresh once on an answer 498 (invalid or expired
  token), then repeats the request.
- Small functions consume an answer: :func:`read_json` (the JSON object, or the error
  an ``{"error": ...}`` envelope, an HTTP error status or a non-JSON body stands for)
  and :func:`save_into` (stream an exchange document into a file).
- The plumbing (adapters, TLS context, token-safe session, retry policy) lives in
  :mod:`wmsync.transport`.

Timeouts always: ``(connect_timeout, timeout)`` for ordinary calls and
``(connect_timeout, transfer_timeout)`` for export, download and import. The token
travels in ``X-Esri-Authorization: Bearer ...``, never in a URL; a download is refused
unless its URL is on the server's own origin.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from . import __version__
from .auth import TokenLike, TokenSource, as_token_source
from .errors import (
    AuthenticationError,
    ConnectionFailed,
    InternalServerError,
    MissingExtensions,
    ProtocolError,
    WMSyncError,
    redact_url,
    server_error,
)
from .exchange.leftout import LeftOut
from .transport import (
    IDEMPOTENT_POSTS,
    RETRY_STATUSES,
    SAFE_METHODS,
    TOKEN_HEADER,
    EnvironmentSettings,
    TokenSafeSession,
    build_session,
    mapped_errors,
)

__all__ = ["EXTENSION", "TOKEN_HEADER", "ExportInfo", "WMServerClient", "read_json", "save_into"]

log = logging.getLogger(__name__)

EXTENSION = "wmsync-replication/1"
CHUNK_SIZE = 64 * 1024

_JSON_TYPES = frozenset({"", "application/json", "text/json", "text/plain"})
_JSON_ONLY_TYPES = frozenset({"application/json", "text/json"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_NOT_WMSERVER = "answered HTML, not JSON: is this a WMServer URL?"
_GZIP_MAGIC = b"\x1f\x8b"
_DEFAULT_PORTS = {"http": 80, "https": 443}

T = TypeVar("T")


@dataclass(frozen=True)
class ExportInfo:
    """What ``replication/export`` answered: where the document is and what it covers."""

    jxl_url: str
    generation: int
    export_time: int
    count: int
    more: bool = False  # a split export: further chunks follow, from ``after``
    after: Optional[str] = None
    #: Elements the server left out because they cannot travel (``skipped``).
    skipped: Tuple[LeftOut, ...] = ()
    #: The node rows whose ``syncSeq`` the export bumped (``syncSeqMarked``); ``None``
    #: when the server did not say (it does not know ``syncSeq``, or none was asked).
    sync_seq_marked: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class Request:
    """One request as the client sends it (without the token, added per attempt).

    :param query: query parameters (already WMServer text).
    :param form: form fields of a POST body.
    :param upload: the path of a file sent as the raw body.
    :param retries: how often urllib3 may repeat it (0 where it never does).
    """

    method: str
    url: str
    timeout: Tuple[float, float]
    query: Optional[Dict[str, str]] = None
    form: Optional[Dict[str, str]] = None
    upload: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    retries: int = 0

    @property
    def where(self) -> str:
        """The URL for messages: without secrets."""
        return redact_url(self.url)


@dataclass
class Answer:
    """What a consumer gets: the streamed response and what to know about its request."""

    response: requests.Response
    request: Request
    token: Optional[str]
    received: int = 0  # bytes a consumer read from the wire, for the client's counter


Consumer = Callable[[Answer], T]


# --------------------------------------------------------------------------- helpers


def _encode(value: Any) -> Optional[str]:
    """One parameter value as WMServer text: booleans true/false, lists/dicts as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _wm_user(name: str) -> str:
    """Workflow Manager's spelling of a domain user on the wire: ``DOMAIN|name``."""
    return name.replace("\\", "|")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


# --------------------------------------------------------------------------- consumers


def read_json(answer: Answer) -> Dict[str, Any]:
    """The answer's JSON object; raise the wmsync error it stands for otherwise.

    :raises ServerError: for the ArcGIS envelope ``{"error": ...}`` (even with HTTP 200)
        and for an HTTP error status.
    :raises ProtocolError: for a redirect not followed, a body that is not a JSON object,
        or ``{"success": false}`` without details.
    """
    content = answer.response.content
    answer.received += len(content)
    return _decode(answer, content)


def save_into(sink: BinaryIO) -> Consumer[int]:
    """A consumer that streams an exchange document into *sink*; returns bytes written.

    A JSON answer (an error envelope, often sent as ``text/plain``), an HTML page or an
    error status is decoded instead and raises what it stands for.
    """

    def save(answer: Answer) -> int:
        response, where = answer.response, answer.request.where
        kind = _content_type(response)
        chunks = response.iter_content(CHUNK_SIZE)
        first = next(chunks, b"")
        # An exchange document starts with "<" or gzip's magic bytes.
        if (
            response.status_code >= 300
            or kind in _HTML_TYPES
            or kind in _JSON_ONLY_TYPES
            or kind.endswith("+json")
            or first.lstrip()[:1] in (b"{", b"[")
        ):
            content = first + b"".join(chunks)
            answer.received += len(content)
            _decode(answer, content)  # raises on any error
            raise ProtocolError("answered JSON, not an exchange document", where)
        if not first:
            raise ProtocolError("answered with an empty body, not an exchange document", where)
        written = 0
        for chunk in itertools.chain((first,), chunks):
            sink.write(chunk)
            written += len(chunk)
        try:
            wire = int(response.raw.tell())  # bytes on the wire (before gzip decoding)
        except (AttributeError, TypeError, ValueError):
            wire = written
        answer.received += wire
        expected = response.headers.get("Content-Length", "")
        if expected.isdigit() and wire < int(expected):
            raise ConnectionFailed(
                f"the download was cut off after {wire} of {expected} bytes", where
            )
        return written

    return save


def _body_problem(kind: str, content: bytes) -> str:
    """Why a body is not a JSON answer ('' when it may be one)."""
    if not content.strip():
        return "answered with an empty body"
    if kind in _HTML_TYPES or content.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        return _NOT_WMSERVER
    if content.lstrip()[:1] == b"<":
        return f"answered markup ({kind or 'no content type'}), not JSON"
    if kind not in _JSON_TYPES and not kind.endswith("+json"):
        return f"answered {kind}, not JSON"
    return ""


def _raise_envelope(envelope: Mapping[str, Any], status: int, answer: Answer) -> None:
    raw_code = envelope.get("code")
    code = 0
    if isinstance(raw_code, (int, str)) and not isinstance(raw_code, bool):
        code = int(raw_code) if str(raw_code).strip().isdigit() else 0
    if code <= 0:
        code = status if status >= 400 else 500
    message = str(envelope.get("message") or "no message")
    details = envelope.get("details") or []
    if not isinstance(details, list):
        details = [details]
    details = [str(d) for d in details]
    token = answer.token
    if token:  # a server that echoes the token must not put it in our messages
        message = message.replace(token, "***")
        details = [d.replace(token, "***") for d in details]
    raise server_error(code, message, details, answer.request.where)


def _decode(answer: Answer, content: bytes) -> Dict[str, Any]:
    """Turn an answer's body into its JSON object, or raise the error it stands for."""
    response, request = answer.response, answer.request
    where = request.where
    status = response.status_code
    problem = _body_problem(_content_type(response), content)
    data: Any = None
    if not problem:
        try:
            data = json.loads(content)
        except ValueError:  # also UnicodeDecodeError
            problem = "answered malformed or truncated JSON"

    envelope = data.get("error") if isinstance(data, dict) else None
    if isinstance(envelope, dict):
        _raise_envelope(envelope, status, answer)
    if status >= 400:
        detail = [problem] if problem else []
        if status in RETRY_STATUSES and request.retries:
            detail.append(f"still failing after {request.retries} retries")
        reason = f"HTTP {status} {response.reason or ''}".strip()
        raise server_error(status, reason, detail, where)
    if 300 <= status < 400:
        location = urljoin(response.url or where, response.headers.get("Location", ""))
        raise ProtocolError(
            f"redirected to {redact_url(location)}, not followed with the token: use that URL",
            where,
        )
    if problem:
        raise ProtocolError(problem, where)
    if not isinstance(data, dict):
        raise ProtocolError("answered JSON that is not an object", where)
    if data.get("success") is False:
        raise InternalServerError(500, "the server reported failure", None, where)
    return data


# --------------------------------------------------------------------------- the client


class WMServerClient:
    """A client for one WMServer service root (``.../arcgis/rest/services/NAME/WMServer``).

    :param url: the service root; a trailing slash and any query string are removed
        (a ``token=`` found there is used as the token when *token* is not given).
    :param user: the Workflow Manager user acting; ``DOMAIN\\name`` goes out as
        ``DOMAIN|name``.
    :param token: ``None``, a token text, a :class:`wmsync.auth.TokenSource` or a
        function returning a token (see :func:`wmsync.auth.as_token_source`).
    :param timeout: read timeout of ordinary calls, in seconds.
    :param connect_timeout: connect timeout of every call.
    :param transfer_timeout: read timeout of export, download and import.
    :param verify: ``True`` (the system trust store through ``truststore`` when it is
        installed, else certifi), ``False``, or the path of a CA bundle.
    :param retries: how often urllib3 retries where that is safe (see
        :mod:`wmsync.transport`).
    :param backoff: urllib3's ``backoff_factor`` between retries.
    :param session: a session to use instead of the client's own (tests, benchmarks);
        it is used as it is (its adapters and retry policy) and not closed by
        :meth:`close`; with a token, redirects are then not followed at all.
    :param environment: the environment's proxy and CA-bundle settings as read by
        other clients of the same run (:class:`~wmsync.transport.EnvironmentSettings`);
        without it the client reads them for itself, once per server.
    :raises ConnectionFailed: when *url* is not an http(s) URL.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str,
        token: TokenLike = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        transfer_timeout: float = 600.0,
        verify: Union[bool, str] = True,
        retries: int = 3,
        backoff: float = 0.5,
        session: Optional[requests.Session] = None,
        environment: Optional[EnvironmentSettings] = None,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
            raise ConnectionFailed("cannot connect: not an http(s) URL", url)
        if token is None:
            planted = [v for k, v in parse_qsl(parts.query) if k.lower() == "token" and v]
            token = planted[0] if planted else None
        self.url: str = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.display_url: str = redact_url(self.url)
        self.user: str = user
        self._token: Optional[TokenSource] = as_token_source(token)
        self._timeout: Tuple[float, float] = (connect_timeout, timeout)
        self._transfer_timeout: Tuple[float, float] = (connect_timeout, transfer_timeout)
        self._retries = max(0, int(retries))
        self._lock = threading.Lock()
        self.requests_made = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        # A replication/info answer this client just read, given to its next
        # replication_info() instead of asking again (see hold_info).
        self._held_info: Optional[Dict[str, Any]] = None

        self._owns_session = session is None
        self._verify: Union[bool, str, None]
        if session is None:
            session, self._verify = build_session(
                [self._op_url(op) for op in IDEMPOTENT_POSTS],
                verify=verify,
                retries=self._retries,
                backoff=backoff,
                user_agent=f"wmsync/{__version__}",
                environment=environment,
            )
        else:
            self._verify = session.verify if verify is True else verify
        self._session = session
        # Following redirects with the token is safe only where rebuild_auth drops it.
        self._follow_with_token = isinstance(session, TokenSafeSession)

    # -- life cycle ------------------------------------------------------------

    def close(self) -> None:
        """Close the client's own session (an injected session is left open)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> WMServerClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WMServerClient({self.display_url!r}, user={self.user!r})"

    # -- service and replication resources -------------------------------------

    def service_info(self) -> Dict[str, Any]:
        """``GET <root>``: the service description (``name``, ``jobTypes`` ...)."""
        return self._json("GET", "")

    def replication_info(self, own_counter: bool = True) -> Dict[str, Any]:
        """``GET replication/info``: node rows plus, with the extensions, ``repository``,
        ``generation`` and ``extensions``. Checks nothing (see :meth:`require_extensions`).

        :param own_counter: ``False`` asks an extension server to leave out
            ``ownCounter`` (work for the server) when only its kind is wanted.
        """
        with self._lock:
            held, self._held_info = self._held_info, None
        if held is not None:
            return copy.deepcopy(held)  # the caller's own copy, as an answer would be
        if own_counter:
            return self._json("GET", "replication/info")
        return self._json("GET", "replication/info", params={"ownCounter": "false"})

    def hold_info(self, info: Mapping[str, Any]) -> None:
        """Give *info*, a full ``replication/info`` answer this client has just read, to
        its next :meth:`replication_info` call instead of reading again.

        Used by the replica factory, which reads each server's info to learn its kind
        and hands the replica over to a caller whose first step is that same read: one
        request fewer per server and run. The answer is let go, unused, as soon as this
        client makes any other request or :meth:`drop_held_info` is called (the factory
        does when it makes another replica of the same server, which could write)."""
        with self._lock:
            self._held_info = dict(info)  # copied once more as it is handed out

    def drop_held_info(self) -> None:
        """Let go of an answer given to :meth:`hold_info`, so the next read asks."""
        with self._lock:
            self._held_info = None

    def require_extensions(self, info: Mapping[str, Any]) -> None:
        """Check that *info* (from :meth:`replication_info`) lists ``wmsync-replication/1``.

        :raises MissingExtensions: when it does not.
        """
        extensions = info.get("extensions")
        if not isinstance(extensions, (list, tuple)) or EXTENSION not in extensions:
            raise MissingExtensions(
                f"this server lacks the WorkflowSync replication extensions ({EXTENSION})",
                self.display_url,
            )

    def update_node(
        self,
        name: str,
        *,
        server_url: Optional[str] = None,
        is_parent: Optional[bool] = None,
        is_connected: Optional[bool] = None,
        last_sync_gen: Optional[int] = None,
        sync_id: Optional[str] = None,
        stamp_last_sync: bool = False,
        job_id_start: Optional[int] = None,
        job_id_block: Optional[int] = None,
        peer_gen: Optional[int] = None,
        sync_seq: Optional[int] = None,
        peer_seq: Optional[int] = None,
        peer_instance: Optional[str] = None,
        peer_gen_seen: Optional[int] = None,
        peer_counter_seen: Optional[str] = None,
    ) -> Optional[int]:
        """``POST replication/nodes/update``: register or update the node row *name*.

        Arguments left ``None`` are not sent (the server keeps what it has). *peer_gen*
        is the file exchange's mark: the peer's generation up to which the peer's
        changes are here (docs/design.md §11); like ``lastSyncGen`` it only moves forward.

        :returns: the ``lastSync`` the server stamped (epoch ms) with
            ``stamp_last_sync=True``, else what it answered (usually ``None``).
        """
        fields: Dict[str, Any] = {
            "name": name,
            "serverURL": server_url,
            "isParent": is_parent,
            "isConnected": is_connected,
            "lastSyncGen": last_sync_gen,
            "syncId": sync_id,
            "stampLastSync": True if stamp_last_sync else None,
            "jobIdStart": job_id_start,
            "jobIdBlock": job_id_block,
            "peerGen": peer_gen,
            "syncSeq": sync_seq,
            "peerSeq": peer_seq,
            "peerInstance": peer_instance,
            "peerGenSeen": peer_gen_seen,
            "peerCounterSeen": peer_counter_seen,
        }
        op = "replication/nodes/update"
        answer = self._json("POST", op, form=fields)
        last_sync = answer.get("lastSync")
        if last_sync is not None and not _is_int(last_sync):
            raise ProtocolError(f"{op} answered a lastSync that is not an integer", self._where(op))
        return last_sync

    def new_incarnation(self, since_gen: int, job_id_floor: Optional[int] = None) -> Dict[str, Any]:
        """``POST replication/incarnation``: the repository went back in time; it takes
        a new incarnation and re-stamps what it changed after *since_gen*."""
        return self._json(
            "POST",
            "replication/incarnation",
            form={"sinceGen": since_gen, "jobIdFloor": job_id_floor},
        )

    def renumber_own_jobs(
        self, name: str, peer: str, job_id_start: int, job_id_block: int, *, dry_run: bool = False
    ) -> List[Dict[str, Any]]:
        """``POST replication/renumber``: the jobs this repository (*name*) made itself
        and holds outside its block move into it, each with an activity record naming
        *peer* (the parent it joins); with *dry_run* nothing changes.

        :returns: ``[{"guid", "from", "to"}]``, what was (or would be) renumbered.
        :raises ProtocolError: the answer has no such list.
        """
        op = "replication/renumber"
        answer = self._json(
            "POST",
            op,
            form={
                "name": name,
                "peer": peer,
                "jobIdStart": job_id_start,
                "jobIdBlock": job_id_block,
                "dryRun": True if dry_run else None,
            },
        )
        return self._renumbered(op, answer)

    def _renumbered(self, op: str, answer: Mapping[str, Any]) -> List[Dict[str, Any]]:
        done = answer.get("renumbered")
        if not isinstance(done, list) or not all(
            isinstance(e, dict) and _is_int(e.get("from")) and _is_int(e.get("to")) for e in done
        ):
            raise ProtocolError(f"{op} answered without a renumbered list", self._where(op))
        return [dict(e) for e in done]

    def renumber_reused_jobs(
        self,
        name: str,
        job_id_start: int,
        job_id_block: int,
        job_id_high: int,
        since_gen: int,
        *,
        guids: Optional[Sequence[str]] = None,
        dry_run: bool = False,
    ) -> List[Dict[str, Any]]:
        """``POST replication/renumber`` with ``jobIdHigh``: this repository (*name*)
        went back in time; of the jobs it made after *since_gen* with ids up to
        *job_id_high* in its block, those in *guids* move past *job_id_high*; with
        *dry_run* the candidates are answered and nothing changes.

        :returns: ``[{"guid", "from", "to"}]``.
        :raises ProtocolError: the answer has no such list.
        """
        op = "replication/renumber"
        answer = self._json(
            "POST",
            op,
            form={
                "name": name,
                "jobIdStart": job_id_start,
                "jobIdBlock": job_id_block,
                "jobIdHigh": job_id_high,
                "sinceGen": since_gen,
                "guids": None if guids is None else ",".join(guids),
                "dryRun": True if dry_run else None,
            },
        )
        return self._renumbered(op, answer)

    def job_ids(
        self, job_id_start: int, job_id_block: int, ids: Sequence[int]
    ) -> Tuple[Optional[int], Dict[int, str]]:
        """``GET replication/jobids``: the highest job id this repository holds in a
        block (``None``: none) and the GUID of the job it holds at each of *ids*.

        :raises ProtocolError: the answer is not of that shape.
        """
        op = "replication/jobids"
        answer = self._json(
            "GET",
            op,
            params={
                "jobIdStart": job_id_start,
                "jobIdBlock": job_id_block,
                "ids": ",".join(str(i) for i in ids),
            },
        )
        highest, jobs = answer.get("highest"), answer.get("jobs")
        if (highest is not None and not _is_int(highest)) or not isinstance(jobs, dict):
            raise ProtocolError(f"{op} answered without highest and jobs", self._where(op))
        try:
            return highest, {int(k): str(v) for k, v in jobs.items()}
        except ValueError:
            raise ProtocolError(
                f"{op} answered a job id that is not one", self._where(op)
            ) from None

    def reset_node(self, name: str) -> None:
        """``POST replication/nodes/reset``: forget the watermarks and syncId of *name*."""
        self._json("POST", "replication/nodes/reset", form={"name": name})

    def delete_node(self, name: str) -> None:
        """``POST replication/nodes/delete``: remove the node row *name* (jobs stay)."""
        self._json("POST", "replication/nodes/delete", form={"name": name})

    #: :meth:`export` takes ``max_count``/``until_gen``/``after`` (a split export).
    splits_exports = True
    #: :meth:`export` takes ``sync_seqs`` (the sender's sequence bump with the export).
    marks_exports = True

    def export(
        self,
        since_gen: int,
        exclude_via: Optional[str] = None,
        *,
        max_count: Optional[int] = None,
        until_gen: Optional[int] = None,
        after: Optional[str] = None,
        sync_seqs: Optional[Mapping[str, int]] = None,
    ) -> ExportInfo:
        """``replication/export``: make an exchange document of the changes after *since_gen*.

        :param since_gen: exclusive lower bound, in this server's generations (0: all).
        :param exclude_via: leave out versions imported from this repository (no echo).
        :param max_count: a split export: at most this many elements in this chunk; the
            answer says whether ``more`` follow and from which cursor (``after``). A
            server that does not split answers everything, without ``more``.
        :param until_gen: the later chunks of a split export: the first chunk's generation.
        :param sync_seqs: node rows of this server (name: sequence number) that take
            that number as ``syncSeq`` once the export is read, if it holds anything
            (``syncSeq``): the sender's bump before an import, without a node update
            per row. The answer's ``sync_seq_marked`` names the rows bumped.
        :raises ProtocolError: when the answer lacks a key or has the wrong type.
        """
        op = "replication/export"
        params = {
            "sinceGen": since_gen,
            "excludeVia": exclude_via,
            "maxCount": max_count,
            "untilGen": until_gen,
            "after": after,
            "syncSeq": None if sync_seqs is None else json.dumps(dict(sync_seqs)),
        }
        answer = self._json("GET", op, params=params, transfer=True)
        jxl_url = answer.get("jxlURL")
        numbers: List[int] = []
        for key in ("generation", "exportTime", "count"):
            value = answer.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                numbers.append(value)
        if not isinstance(jxl_url, str) or not jxl_url or len(numbers) != 3:
            raise ProtocolError(
                f"{op} answered without a jxlURL and integer generation, exportTime, count",
                self._where(op),
            )
        more, cursor = answer.get("more") is True, answer.get("after")
        if more and (not isinstance(cursor, str) or not cursor):
            raise ProtocolError(f"{op} answered more=true without an after cursor", self._where(op))
        generation, export_time, count = numbers
        skipped = answer.get("skipped") or []
        if not isinstance(skipped, list):
            raise ProtocolError(f"{op} answered a skipped that is not a list", self._where(op))
        marked = answer.get("syncSeqMarked")
        if marked is not None and (
            not isinstance(marked, list) or not all(isinstance(n, str) for n in marked)
        ):
            text = f"{op} answered a syncSeqMarked that is not a list of names"
            raise ProtocolError(text, self._where(op))
        return ExportInfo(
            urljoin(self.url + "/", jxl_url),
            generation,
            export_time,
            count,
            more=more,
            after=cursor if more else None,
            skipped=tuple(LeftOut.from_dict(e) for e in skipped if isinstance(e, Mapping)),
            sync_seq_marked=None if marked is None else tuple(marked),
        )

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        """``replication/export?countOnly=true``: what :meth:`export` would hold, counted;
        the server writes no file.

        :raises ProtocolError: when the answer has no integer ``count``.
        """
        return self._counted(since_gen, exclude_via, "count")[0]

    def count_window(self, since_gen: int, exclude_via: Optional[str] = None) -> Tuple[int, int]:
        """:meth:`count_changes` and the generation the count was made at: an export at
        that moment would have covered that generation.

        :raises ProtocolError: when the answer has no integer ``count`` or ``generation``.
        """
        count, generation = self._counted(since_gen, exclude_via, "count", "generation")
        return count, generation

    def count_excluding_each(
        self, since_gen: int, names: List[str]
    ) -> Tuple[int, int, Optional[Dict[str, int]]]:
        """:meth:`count_window` of the uncut window, and in the same request the count
        of the window cut by each of *names* (``excludeEachVia``): one request where
        counting each would take one per name.

        :returns: (count, generation, count by name); the counts by name are ``None``
            from a server that does not know ``excludeEachVia`` (its answer has no
            ``excludingEach``: it counted the uncut window only).
        :raises ProtocolError: when a count is not an integer or a name is missing.
        """
        op = "replication/export"
        each = json.dumps(names)
        answer = self.get(op, sinceGen=since_gen, countOnly="true", excludeEachVia=each)
        total, generation = self._integers(op, answer, "count", "generation")
        cut = answer.get("excludingEach")
        if cut is None:
            return total, generation, None
        if not isinstance(cut, dict):
            text = f"{op} answered an excludingEach that is not an object"
            raise ProtocolError(text, self._where(op))
        return total, generation, dict(zip(names, self._integers(op, cut, *names)))

    def _counted(self, since_gen: int, exclude_via: Optional[str], *keys: str) -> List[int]:
        op = "replication/export"
        answer = self.get(op, sinceGen=since_gen, excludeVia=exclude_via, countOnly="true")
        return self._integers(op, answer, *keys)

    def _integers(self, op: str, answer: Mapping[str, Any], *keys: str) -> List[int]:
        """The integer values of *keys* in *answer*; a missing or other value is refused
        by name."""
        values: List[int] = []
        for key in keys:
            value = answer.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProtocolError(
                    f"{op}?countOnly=true answered without an integer {key}", self._where(op)
                )
            values.append(value)
        return values

    def download(self, jxl_url: str, dest: BinaryIO) -> int:
        """Stream the document at *jxl_url* into *dest* (decoded, 64 KiB at a time).

        :param jxl_url: from :meth:`export`; it must be on this server's own origin, so
            that the token never goes anywhere else.
        :returns: the number of bytes written.
        :raises ProtocolError: for a URL on another host, or an answer that is not a
            document; :class:`ConnectionFailed` when the transfer is cut short.
        """
        target = urljoin(self.url + "/", jxl_url)
        try:
            origin, home = _origin(target), _origin(self.url)
        except ValueError:  # an invalid port
            origin, home = ("", "", None), _origin(self.url)
        upgrade = home[0] == "http" and origin[0] == "https" and origin[2] == 443
        if origin[1] != home[1] or (origin != home and not upgrade):
            raise ProtocolError(
                f"refusing to download {redact_url(target)}: it is not on the server's own"
                " host, and the token goes nowhere else",
                self.display_url,
            )
        # A plain URL: sent without the WMServer parameters.
        request = self._build("GET", target, True, headers={"Accept-Encoding": "gzip"})
        return self._request(request, save_into(dest))

    def import_document(
        self,
        path: Union[str, os.PathLike[str]],
        merge: bool = True,
        *,
        gzip: bool = False,
        peer: Optional[str] = None,
        peer_seq: Optional[int] = None,
    ) -> Dict[str, Any]:
        """``POST replication/import`` with the file at *path* as a streamed raw body.

        :param merge: ``True`` combines (what the sync does); ``False`` replaces
            everything on the server.
        :param gzip: the file is gzip-compressed: sent with ``Content-Encoding: gzip``.
        :param peer: with *peer_seq* (extensions): the sending repository, whose node
            row on the server records *peer_seq* in the import's transaction.
        :returns: the server's answer (``importTime``, ``generation``, ``added`` ...).
        :raises ValueError: with ``gzip=True`` for a file that is not gzip.
        :raises OSError: when the file cannot be read.
        """
        path = os.fspath(path)
        headers = {"Content-Type": "application/xml"}
        if gzip:
            with open(path, "rb") as head:
                if head.read(2) != _GZIP_MAGIC:
                    raise ValueError(f"{path} is not gzip-compressed")
            headers["Content-Encoding"] = "gzip"
        return self._json(
            "POST",
            "replication/import",
            params={"merge": merge, "peer": peer, "peerSeq": peer_seq},
            upload=path,
            headers=headers,
            transfer=True,
        )

    def conflicts(self, since_gen: Optional[int] = None) -> List[Dict[str, Any]]:
        """``GET replication/conflicts``: the conflict log (after *since_gen* when given)."""
        op = "replication/conflicts"
        answer = self._json("GET", op, params={"sinceGen": since_gen})
        found = answer.get("conflicts")
        if not isinstance(found, list):
            raise ProtocolError(f"{op} answered without a conflicts list", self._where(op))
        return found

    # -- the jobs and configuration API ----------------------------------------

    def get(self, path: str, **params: Any) -> Dict[str, Any]:
        """``GET <root>/<path>`` with *params* in the query string (reads; retried)."""
        return self._json("GET", path, params=params)

    def post(self, path: str, **params: Any) -> Dict[str, Any]:
        """Form ``POST <root>/<path>`` (changes; never retried once sent).

        Values: booleans as ``true``/``false``, dicts and lists JSON-encoded, ``None``
        left out.
        """
        return self._json("POST", path, form=params)

    # -- sending ---------------------------------------------------------------

    def _op_url(self, op: str) -> str:
        op = op.strip("/")
        return f"{self.url}/{op}" if op else self.url

    def _where(self, op: str) -> str:
        return redact_url(self._op_url(op))

    def _json(
        self,
        method: str,
        op: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        form: Optional[Mapping[str, Any]] = None,
        upload: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        transfer: bool = False,
    ) -> Dict[str, Any]:
        """Send the WMServer operation *op*; return its JSON object (see :func:`read_json`).

        :param params: query parameters; ``user`` and ``f=json`` are added.
        :param form: form body fields of a POST; ``user`` and ``f=json`` are added.
        :param upload: the path of a file sent as the raw body (params in the query).
        :param transfer: use the transfer timeout (export, import).
        """
        fields: Dict[str, str] = {"user": _wm_user(self.user), "f": "json"}
        for key, value in {**(params or {}), **(form or {})}.items():
            text = _encode(value)
            if text is not None:
                fields[key] = _wm_user(text) if key == "user" else text
        request = self._build(
            method,
            self._op_url(op),
            transfer,
            query=None if form is not None else fields,
            form=fields if form is not None else None,
            upload=upload,
            headers=dict(headers or {}),
        )
        return self._request(request, read_json)

    def _build(
        self,
        method: str,
        url: str,
        transfer: bool,
        *,
        query: Optional[Dict[str, str]] = None,
        form: Optional[Dict[str, str]] = None,
        upload: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> Request:
        """A :class:`Request` with this client's timeout and retry count for it."""
        retried = method in SAFE_METHODS or urlsplit(url).path.endswith(IDEMPOTENT_POSTS)
        return Request(
            method,
            url,
            self._transfer_timeout if transfer else self._timeout,
            query=query,
            form=form,
            upload=upload,
            headers=headers or {},
            retries=self._retries if retried else 0,
        )

    def _count(self, *, made: int = 0, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            if made:
                self._held_info = None  # a request may change what the server would answer
            self.requests_made += made
            self.bytes_sent += sent
            self.bytes_received += received

    def _request(self, request: Request, consume: Consumer[T]) -> T:
        """Send *request* (through :meth:`_send`) and return what *consume* made of it.

        A 498 (invalid or expired token) refreshes the token source once and repeats
        the request; every other failure leaves as a :class:`~wmsync.errors.WMSyncError`.
        """
        refreshed = False
        while True:
            token = self._get_token(request.url)
            try:
                return self._send(request, token, consume)
            except AuthenticationError as error:
                if error.code != 498 or refreshed or self._token is None:
                    raise
                refreshed = True
                if not self._refresh_token():
                    raise
                log.info("token rejected as expired by %s; retrying with a new one", error.url)

    def _send(self, request: Request, token: Optional[str], consume: Consumer[T]) -> T:
        """The one place that uses the session, inside :func:`~wmsync.transport.mapped_errors`.

        The response is streamed and closed (and an uploaded file too) whatever happens.
        """
        headers = dict(request.headers)
        if token:
            headers[TOKEN_HEADER] = "Bearer " + token
        with ExitStack() as stack, mapped_errors(request.where, request.timeout, request.retries):
            data: Any = request.form
            sent = len(urlencode(request.form)) if request.form else 0
            if request.upload is not None:
                data = stack.enter_context(open(request.upload, "rb"))
                sent = os.fstat(data.fileno()).st_size
            self._count(made=1, sent=sent)
            log.debug("%s %s", request.method, request.where)
            response = self._session.request(
                request.method,
                request.url,
                params=request.query,
                data=data,
                headers=headers,
                timeout=request.timeout,
                verify=self._verify,
                stream=True,
                allow_redirects=not token or self._follow_with_token,
            )
            stack.callback(response.close)
            answer = Answer(response, request, token)
            try:
                return consume(answer)
            finally:
                self._count(received=answer.received)

    def _get_token(self, target: str) -> Optional[str]:
        if self._token is None:
            return None
        failure: Optional[WMSyncError] = None
        try:
            return self._token.get()
        except WMSyncError:
            raise
        except Exception as exc:  # only its type is shown: its text may hold a password
            failure = AuthenticationError(
                499, f"could not obtain a token ({type(exc).__name__})", None, target
            )
        raise failure  # outside the except block: nothing chains to the original

    def _refresh_token(self) -> bool:
        assert self._token is not None
        try:
            return self._token.refresh()
        except WMSyncError:
            raise
        except Exception as exc:  # keep the 498 error; its type only: no secrets
            log.warning("could not refresh the token (%s)", type(exc).__name__)
            return False
