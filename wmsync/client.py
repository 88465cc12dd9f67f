"""The WMServer REST client: one :class:`WMServerClient` per Workflow Manager server.

It speaks the wire contract of ``wmserver-protocol.md`` through one ``requests.Session``
and turns every outcome into data or a :mod:`wmsync.errors` exception. The policies:

- **Timeouts, always.** ``(connect_timeout, timeout)`` for ordinary calls and
  ``(connect_timeout, transfer_timeout)`` for export, download and import.
- **Retries only where safe.** urllib3 retries connection failures on every call
  (nothing was sent) and 502/503/504 answers and read timeouts on GET and HEAD only,
  plus POST to ``replication/import`` and ``replication/nodes/update``, which the
  protocol makes idempotent (imports are idempotent, watermarks only move forward).
  urllib3's method allowlist is per adapter, so those two operation URLs get an
  adapter of their own, mounted on the session under their exact prefix; a changing
  call on the jobs API is never repeated after a read timeout.
- **Token hygiene.** The token travels in ``X-Esri-Authorization: Bearer ...``, never
  in a URL; it is dropped on a redirect to another host (requests only strips
  ``Authorization`` by itself); a download is refused unless its URL is on the
  server's own origin. An answer 498 (invalid or expired token) makes the token source
  refresh once, then the call is repeated.
- **One place for errors.** :meth:`WMServerClient._call` is the only method that
  touches the session; requests/urllib3 exceptions, HTTP error statuses, answers that
  are not JSON and the ArcGIS envelope ``{"error": {...}}`` (which arrives with HTTP
  200) all become wmsync errors there, built from redacted URLs and never chained to
  the original exception.
"""

from __future__ import annotations

import http.client
import importlib
import itertools
import json
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple, Type, Union
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .auth import TokenLike, TokenSource, as_token_source
from .errors import (
    AuthenticationError,
    ConnectionFailed,
    InternalServerError,
    MissingExtensions,
    ProtocolError,
    TimedOut,
    TransportError,
    WMSyncError,
    redact_url,
    server_error,
)

__all__ = ["EXTENSION", "TOKEN_HEADER", "ExportInfo", "WMServerClient"]

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Esri-Authorization"  # noqa: S105 - a header name, not a secret
EXTENSION = "wmsync-replication/1"
CHUNK_SIZE = 64 * 1024
RETRY_STATUSES = (502, 503, 504)
# POST operations the protocol makes idempotent: safe to repeat after a lost answer.
IDEMPOTENT_POSTS = ("replication/import", "replication/nodes/update")

_SAFE_METHODS = ("GET", "HEAD")
_JSON_TYPES = frozenset({"", "application/json", "text/json", "text/plain"})
_JSON_ONLY_TYPES = frozenset({"application/json", "text/json"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_NOT_WMSERVER = "answered HTML, not JSON: is this a WMServer URL?"
_GZIP_MAGIC = b"\x1f\x8b"
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Short, URL-free reasons pulled out of a requests/urllib3 exception chain.
_REASONS = (
    re.compile(r"certificate verify failed[^'\"()\]]*"),
    re.compile(r"\[(?:Errno|WinError) -?\d+\] ([^'\"()\]]+)"),
    re.compile(r"Remote end closed connection without response"),
    re.compile(r"Connection (?:refused|reset by peer|aborted)"),
    re.compile(r"IncompleteRead\(\d+ bytes read(?:, \d+ more expected)?\)"),
    re.compile(r"too many \d{3} error responses"),
)

# What a transport can raise out of requests: its own tree, and in a few versions bare
# urllib3 or http.client errors while a streamed body is read.
_TRANSPORT_EXCEPTIONS: Tuple[Type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
)


@dataclass(frozen=True)
class ExportInfo:
    """What ``replication/export`` answered: where the document is and what it covers."""

    jxl_url: str
    generation: int
    export_time: int
    count: int


class _Adapter(HTTPAdapter):
    """An HTTPAdapter with a retry policy and, optionally, an SSL context (truststore)."""

    def __init__(self, retry: Retry, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self._ssl_context = ssl_context  # set first: HTTPAdapter.__init__ builds the pool
        super().__init__(max_retries=retry)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        context = getattr(self, "_ssl_context", None)
        if context is not None:
            pool_kwargs.setdefault("ssl_context", context)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        context = getattr(self, "_ssl_context", None)
        if context is not None:
            proxy_kwargs.setdefault("ssl_context", context)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class _TokenSafeSession(requests.Session):
    """A Session that drops the token header on a redirect to another host.

    requests strips only ``Authorization`` there (``Session.rebuild_auth``); the same
    rule (``should_strip_auth``: other host, or a scheme/port change other than
    http -> https) is applied here to ``X-Esri-Authorization``.
    """

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        headers = prepared_request.headers
        old_url, new_url = response.request.url, prepared_request.url
        if TOKEN_HEADER in headers and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            del headers[TOKEN_HEADER]


def _system_ssl_context() -> Optional[ssl.SSLContext]:
    """The operating system's trust store through ``truststore`` (ArcGIS Pro 3.3+), if any."""
    try:
        truststore = importlib.import_module("truststore")
    except ImportError:
        return None  # requests' default: certifi
    context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return context


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


def _chain(exc: BaseException) -> List[BaseException]:
    """*exc* and the exceptions it wraps (args, urllib3's ``reason``, cause, context)."""
    chain: List[BaseException] = []
    todo: List[BaseException] = [exc]
    while todo and len(chain) < 12:
        current = todo.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        linked = [*current.args, getattr(current, "reason", None)]
        linked += [current.__cause__, current.__context__]
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return chain


def _reason(chain: List[BaseException]) -> str:
    """A short reason for an exception chain that contains no URL: never its own text."""
    for current in chain:
        text = str(current)
        for pattern in _REASONS:
            found = pattern.search(text)
            if found:
                return (found.group(found.lastindex) if found.lastindex else found.group()).strip()
    return type(chain[-1]).__name__


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
    :param retries: how often urllib3 retries where that is safe (see the module doc).
    :param backoff: urllib3's ``backoff_factor`` between retries.
    :param session: a session to use instead of the client's own (tests, benchmarks);
        it is used as it is (its adapters and retry policy) and not closed by
        :meth:`close`; with a token, redirects are then not followed at all.
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

        self._owns_session = session is None
        if session is None:
            session = _TokenSafeSession()
            context = None
            if verify is True:
                context = _system_ssl_context()
            elif isinstance(verify, str):
                # --ca-bundle adds that bundle to the usual trust store (DESIGN §7).
                context = _system_ssl_context() or ssl.create_default_context(
                    cafile=certifi.where()
                )
                context.load_verify_locations(cafile=verify)
                verify = True
            plain = _Adapter(self._retry_policy(_SAFE_METHODS, backoff), context)
            idempotent = _Adapter(self._retry_policy((*_SAFE_METHODS, "POST"), backoff), context)
            session.mount("http://", plain)
            session.mount("https://", plain)
            for op in IDEMPOTENT_POSTS:  # the longest matching prefix wins in requests
                session.mount(self._op_url(op), idempotent)
            session.headers["User-Agent"] = (
                f"wmsync/{__version__} {requests.utils.default_user_agent()}"
            )
            self._verify: Union[bool, str, None] = verify
        else:
            self._verify = session.verify if verify is True else verify
        self._session = session
        # Following redirects with the token is safe only where rebuild_auth drops it.
        self._follow_with_token = isinstance(session, _TokenSafeSession)

    def _retry_policy(self, methods: Tuple[str, ...], backoff: float) -> Retry:
        retries = self._retries
        return Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,  # e.g. a failed certificate check: repeating it cannot help
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset(methods),
            raise_on_status=False,
            respect_retry_after_header=True,
        )

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

    def replication_info(self) -> Dict[str, Any]:
        """``GET replication/info``: node rows plus, with the extensions, ``repository``,
        ``generation`` and ``extensions``. Checks nothing (see :meth:`require_extensions`).
        """
        return self._json("GET", "replication/info")

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
    ) -> Optional[int]:
        """``POST replication/nodes/update``: register or update the node row *name*.

        Arguments left ``None`` are not sent (the server keeps what it has).

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
        }
        op = "replication/nodes/update"
        answer = self._json("POST", op, form=fields)
        last_sync = answer.get("lastSync")
        if last_sync is not None and not _is_int(last_sync):
            raise ProtocolError(f"{op} answered a lastSync that is not an integer", self._where(op))
        return last_sync

    def reset_node(self, name: str) -> None:
        """``POST replication/nodes/reset``: forget the watermarks and syncId of *name*."""
        self._json("POST", "replication/nodes/reset", form={"name": name})

    def export(self, since_gen: int, exclude_via: Optional[str] = None) -> ExportInfo:
        """``replication/export``: make an exchange document of the changes after *since_gen*.

        :param since_gen: exclusive lower bound, in this server's generations (0: all).
        :param exclude_via: leave out versions imported from this repository (no echo).
        :raises ProtocolError: when the answer lacks a key or has the wrong type.
        """
        op = "replication/export"
        answer = self._json(
            "GET", op, params={"sinceGen": since_gen, "excludeVia": exclude_via}, transfer=True
        )
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
        return ExportInfo(urljoin(self.url + "/", jxl_url), *numbers)

    def count_changes(self, since_gen: int, exclude_via: Optional[str] = None) -> int:
        """``replication/export?countOnly=true``: what :meth:`export` would hold, counted;
        the server writes no file.

        :raises ProtocolError: when the answer has no integer ``count``.
        """
        op = "replication/export"
        answer = self.get(op, sinceGen=since_gen, excludeVia=exclude_via, countOnly="true")
        count = answer.get("count")
        if not isinstance(count, int) or isinstance(count, bool):
            raise ProtocolError(f"{op}?countOnly=true answered without an integer count",
                                self._where(op))
        return count

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
        _, written = self._call("GET", "", url=target, sink=dest, transfer=True)
        return written

    def import_document(
        self, path: Union[str, os.PathLike[str]], merge: bool = True, *, gzip: bool = False
    ) -> Dict[str, Any]:
        """``POST replication/import`` with the file at *path* as a streamed raw body.

        :param merge: ``True`` combines (what the sync does); ``False`` replaces
            everything on the server.
        :param gzip: the file is gzip-compressed: sent with ``Content-Encoding: gzip``.
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
            params={"merge": merge},
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

    # -- the one place that talks HTTP -----------------------------------------

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
        answer, _ = self._call(
            method,
            op,
            params=params,
            form=form,
            upload=upload,
            headers=headers,
            transfer=transfer,
        )
        return answer

    def _count(self, *, made: int = 0, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.requests_made += made
            self.bytes_sent += sent
            self.bytes_received += received

    def _call(
        self,
        method: str,
        op: str,
        *,
        url: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        form: Optional[Mapping[str, Any]] = None,
        upload: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        transfer: bool = False,
        sink: Optional[BinaryIO] = None,
    ) -> Tuple[Dict[str, Any], int]:
        """Send one operation; return its JSON object, or stream the body into *sink*.

        The only method that uses the session: every failure leaves it as a
        :class:`~wmsync.errors.WMSyncError`. A 498 answer refreshes the token source
        once and repeats the call.

        :param url: a full URL instead of *op* (downloads: sent without parameters).
        :param params: query parameters; ``user`` and ``f=json`` are added.
        :param form: form body fields of a POST; ``user`` and ``f=json`` are added.
        :param upload: the path of a file sent as the raw body (params in the query).
        :returns: ``(answer, bytes written to sink)``.
        """
        target = url or self._op_url(op)
        query: Optional[Dict[str, str]] = None
        body: Optional[Dict[str, str]] = None
        if url is None:  # a WMServer operation: who acts, and JSON please
            fields: Dict[str, str] = {"user": _wm_user(self.user), "f": "json"}
            for key, value in {**(params or {}), **(form or {})}.items():
                text = _encode(value)
                if text is not None:
                    fields[key] = _wm_user(text) if key == "user" else text
            if form is not None:
                body = fields
            else:
                query = fields
        refreshed = False
        while True:
            token = self._get_token(target)
            try:
                return self._attempt(
                    method, target, query, body, upload, headers, token, transfer, sink
                )
            except AuthenticationError as error:
                if error.code != 498 or refreshed or self._token is None:
                    raise
                refreshed = True
                if not self._refresh_token():
                    raise
                log.info("token rejected as expired by %s; retrying with a new one", error.url)

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
        raise failure

    def _refresh_token(self) -> bool:
        assert self._token is not None
        try:
            return self._token.refresh()
        except WMSyncError:
            raise
        except Exception as exc:  # keep the 498 error; its type only: no secrets
            log.warning("could not refresh the token (%s)", type(exc).__name__)
            return False

    def _attempt(
        self,
        method: str,
        target: str,
        query: Optional[Dict[str, str]],
        body: Optional[Dict[str, str]],
        upload: Optional[str],
        headers: Optional[Mapping[str, str]],
        token: Optional[str],
        transfer: bool,
        sink: Optional[BinaryIO],
    ) -> Tuple[Dict[str, Any], int]:
        where = redact_url(target)
        send_headers: Dict[str, str] = dict(headers or {})
        if token:
            send_headers[TOKEN_HEADER] = "Bearer " + token
        if sink is not None:
            send_headers["Accept-Encoding"] = "gzip"
        timeout = self._transfer_timeout if transfer else self._timeout
        failure: Optional[WMSyncError] = None
        response: Optional[requests.Response] = None
        upload_file: Optional[BinaryIO] = None
        try:
            data: Any = body
            sent = len(urlencode(body)) if body else 0
            if upload is not None:
                upload_file = open(upload, "rb")  # closed in finally
                data = upload_file
                sent = os.fstat(upload_file.fileno()).st_size
            self._count(made=1, sent=sent)
            log.debug("%s %s", method, where)
            response = self._session.request(
                method,
                target,
                params=query,
                data=data,
                headers=send_headers,
                timeout=timeout,
                verify=self._verify,
                stream=True,
                allow_redirects=not token or self._follow_with_token,
            )
            return self._receive(method, response, where, token, sink)
        except _TRANSPORT_EXCEPTIONS as exc:
            failure = self._transport_error(exc, where, timeout)
        finally:
            if response is not None:
                response.close()
            if upload_file is not None:
                upload_file.close()
        # Raised here, outside the except block: nothing chains to the original
        # exception, whose text holds URLs.
        raise failure

    def _receive(
        self,
        method: str,
        response: requests.Response,
        where: str,
        token: Optional[str],
        sink: Optional[BinaryIO],
    ) -> Tuple[Dict[str, Any], int]:
        if sink is None:
            content = response.content
            self._count(received=len(content))
            return self._decode(method, response, content, where, token), 0
        kind = _content_type(response)
        chunks = response.iter_content(CHUNK_SIZE)
        first = next(chunks, b"")
        # An exchange document starts with "<" or gzip's magic bytes; a JSON answer (an
        # error envelope, often sent as text/plain) or an error status is decoded instead.
        if (
            response.status_code >= 300
            or kind in _HTML_TYPES
            or kind in _JSON_ONLY_TYPES
            or kind.endswith("+json")
            or first.lstrip()[:1] in (b"{", b"[")
        ):
            content = first + b"".join(chunks)
            self._count(received=len(content))
            self._decode(method, response, content, where, token)  # raises on any error
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
        self._count(received=wire)
        expected = response.headers.get("Content-Length", "")
        if expected.isdigit() and wire < int(expected):
            raise ConnectionFailed(
                f"the download was cut off after {wire} of {expected} bytes", where
            )
        return {}, written

    def _decode(
        self,
        method: str,
        response: requests.Response,
        content: bytes,
        where: str,
        token: Optional[str],
    ) -> Dict[str, Any]:
        """Turn an answer into its JSON object, or raise the error it stands for."""
        status = response.status_code
        kind = _content_type(response)
        data: Any = None
        problem = ""
        if not content.strip():
            problem = "answered with an empty body"
        elif kind in _HTML_TYPES or content.lstrip()[:5].lower() in (b"<!doc", b"<html"):
            problem = _NOT_WMSERVER
        elif content.lstrip()[:1] == b"<":
            problem = f"answered markup ({kind or 'no content type'}), not JSON"
        elif kind not in _JSON_TYPES and not kind.endswith("+json"):
            problem = f"answered {kind}, not JSON"
        else:
            try:
                data = json.loads(content)
            except ValueError:  # also UnicodeDecodeError
                problem = "answered malformed or truncated JSON"

        envelope = data.get("error") if isinstance(data, dict) else None
        if isinstance(envelope, dict):
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
            if token:  # a server that echoes the token must not put it in our messages
                message = message.replace(token, "***")
                details = [str(d).replace(token, "***") for d in details]
            raise server_error(code, message, [str(d) for d in details], where)
        if status >= 400:
            detail = [problem] if problem else []
            retried = method in _SAFE_METHODS or where.endswith(IDEMPOTENT_POSTS)
            if status in RETRY_STATUSES and self._retries and retried:
                detail.append(f"still failing after {self._retries} retries")
            reason = f"HTTP {status} {response.reason or ''}".strip()
            raise server_error(status, reason, detail, where)
        if 300 <= status < 400:
            location = urljoin(response.url or where, response.headers.get("Location", ""))
            location = redact_url(location)
            raise ProtocolError(
                f"redirected to {location}, not followed with the token: use that URL", where
            )
        if problem:
            raise ProtocolError(problem, where)
        if not isinstance(data, dict):
            raise ProtocolError("answered JSON that is not an object", where)
        if data.get("success") is False:
            raise InternalServerError(500, "the server reported failure", None, where)
        return data

    @staticmethod
    def _transport_error(
        exc: BaseException, where: str, timeout: Tuple[float, float]
    ) -> WMSyncError:
        """The wmsync error for a requests/urllib3/http.client exception."""
        errors = requests.exceptions
        u3 = urllib3.exceptions
        chain = _chain(exc)
        why = _reason(chain)
        connect_s, read_s = timeout
        # requests reports a read timeout as ConnectionError once urllib3's retries are
        # used up (MaxRetryError wrapping ReadTimeoutError), and during a streamed body:
        # look down the chain. NewConnectionError is a ConnectTimeoutError by inheritance.
        if isinstance(exc, errors.ConnectTimeout) or any(
            isinstance(e, u3.ConnectTimeoutError) and not isinstance(e, u3.NewConnectionError)
            for e in chain
        ):
            return TimedOut(f"could not connect within {connect_s:g} s", where)
        if isinstance(exc, errors.Timeout) or any(
            isinstance(e, u3.ReadTimeoutError) for e in chain
        ):
            return TimedOut(f"no answer within {read_s:g} s (read timeout)", where)
        if isinstance(exc, errors.SSLError):
            return ConnectionFailed(f"TLS handshake or certificate check failed ({why})", where)
        if isinstance(exc, errors.ProxyError):
            return ConnectionFailed(f"the proxy failed ({why})", where)
        if isinstance(exc, (errors.InvalidURL, errors.MissingSchema, errors.InvalidSchema)):
            return ConnectionFailed("cannot connect: the URL is not valid", where)
        if isinstance(exc, errors.URLRequired):
            return ConnectionFailed("cannot connect: no URL", where)
        if isinstance(exc, errors.ConnectionError):
            return ConnectionFailed(f"connection failed ({why})", where)
        if isinstance(exc, errors.ChunkedEncodingError):
            return ConnectionFailed(f"the connection broke during the answer ({why})", where)
        if isinstance(exc, errors.ContentDecodingError):
            return ProtocolError("answered a body that cannot be decoded (bad gzip?)", where)
        if isinstance(exc, errors.TooManyRedirects):
            return ProtocolError("too many redirects", where)
        if isinstance(exc, errors.RetryError):
            return TransportError(f"gave up after retries ({why})", where)
        if isinstance(exc, errors.InvalidHeader):
            # its text would show the header value: the token, perhaps
            return ProtocolError("cannot send: a header value (the token?) is invalid", where)
        if isinstance(exc, errors.UnrewindableBodyError):
            return TransportError("cannot resend the request body", where)
        if isinstance(exc, (errors.InvalidJSONError, errors.HTTPError, errors.StreamConsumedError)):
            return ProtocolError(f"unusable answer ({type(exc).__name__})", where)
        if isinstance(exc, (u3.HTTPError, http.client.HTTPException)):
            return ConnectionFailed(f"connection failed ({why})", where)
        return TransportError(f"request failed ({type(exc).__name__}: {why})", where)
