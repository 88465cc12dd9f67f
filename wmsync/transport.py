"""HTTP plumbing under :class:`wmsync.client.WMServerClient`: session, TLS, retries, errors.

The client decides *what* to send and how to read an answer; this module decides *how*
it travels and what a failure becomes:

- :func:`build_session` makes a :class:`TokenSafeSession` whose adapters carry the
  retry policy (:func:`retry_policy`) and, where ``truststore`` is installed, the
  operating system's trust store (:func:`system_ssl_context`).
- :func:`mapped_errors` is the one context manager every request runs in: any
  requests/urllib3/http.client exception raised inside it leaves as a
  :class:`~wmsync.errors.WMSyncError` built from the redacted URL, with the original
  (whose text holds URLs) suppressed.

The policies (docs/design.md §7, §8):

- **Retries only where safe.** urllib3 retries connection failures on every call
  (nothing was sent) and 502/503/504 answers and read timeouts on GET and HEAD only,
  plus POST to ``replication/import`` and ``replication/nodes/update``, which the
  protocol makes idempotent. urllib3's method allowlist is per adapter, so those two
  operation URLs get an adapter of their own, mounted under their exact prefix.
- **Token hygiene.** The token travels in ``X-Esri-Authorization``; requests strips
  only ``Authorization`` on a redirect to another host, so :class:`TokenSafeSession`
  strips this header too.
"""

from __future__ import annotations

import functools
import http.client
import importlib
import re
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, Union
from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ConnectionFailed, ProtocolError, TimedOut, TransportError, WMSyncError

__all__ = [
    "IDEMPOTENT_POSTS",
    "RETRY_STATUSES",
    "SAFE_METHODS",
    "TOKEN_HEADER",
    "TRANSPORT_EXCEPTIONS",
    "SSLContextAdapter",
    "TokenSafeSession",
    "build_session",
    "mapped_errors",
    "retry_policy",
    "system_ssl_context",
    "transport_error",
]

TOKEN_HEADER = "X-Esri-Authorization"  # noqa: S105 - a header name, not a secret
RETRY_STATUSES = (502, 503, 504)
SAFE_METHODS = ("GET", "HEAD")
# POST operations the protocol makes idempotent: safe to repeat after a lost answer.
IDEMPOTENT_POSTS = ("replication/import", "replication/nodes/update")

# What a transport can raise out of requests: its own tree, and in a few versions bare
# urllib3 or http.client errors while a streamed body is read.
TRANSPORT_EXCEPTIONS: Tuple[Type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
)

# Short, URL-free reasons pulled out of a requests/urllib3 exception chain.
_REASONS = (
    re.compile(r"certificate verify failed[^'\"()\]]*"),
    re.compile(r"\[(?:Errno|WinError) -?\d+\] ([^'\"()\]]+)"),
    re.compile(r"Remote end closed connection without response"),
    re.compile(r"Connection (?:refused|reset by peer|aborted)"),
    re.compile(r"IncompleteRead\(\d+ bytes read(?:, \d+ more expected)?\)"),
    re.compile(r"too many \d{3} error responses"),
)


# --------------------------------------------------------------------------- session


class SSLContextAdapter(HTTPAdapter):
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


class EnvironmentSettings:
    """The proxy and CA-bundle settings requests reads from the environment, kept per
    server and request arguments for the sessions that share this object.

    requests reads them at every request (on Windows the registry too), which cost a
    tenth to a fifth of the client's time per request. A replica factory makes a client
    per task, so the sessions of one factory (one run or command) share one of these:
    the environment does not change under a run, and is read again by the next one.
    """

    def __init__(self) -> None:
        self._merged: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def merged(self, key: Tuple[Any, ...], read: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """The settings under *key*, from *read* the first time; the caller's own copy."""
        with self._lock:
            merged = self._merged.get(key)
        if merged is None:
            merged = read()
            with self._lock:
                self._merged[key] = merged
        return {**merged, "proxies": dict(merged["proxies"])}


def _frozen(value: Any) -> Any:
    """*value* as a dictionary key: a mapping becomes a sorted tuple of its pairs, a
    list a tuple."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class TokenSafeSession(requests.Session):
    """A Session that drops the token header on a redirect to another host, and reads
    the environment's proxy and CA-bundle settings once per server
    (:class:`EnvironmentSettings`, its own or one it shares).

    requests strips only ``Authorization`` there (``Session.rebuild_auth``); the same
    rule (``should_strip_auth``: other host, or a scheme/port change other than
    http -> https) is applied here to ``X-Esri-Authorization``.
    """

    def __init__(self, environment: Optional[EnvironmentSettings] = None) -> None:
        super().__init__()
        self._environment = environment if environment is not None else EnvironmentSettings()

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """requests' own merge, read once per server and arguments (see
        :class:`EnvironmentSettings`). The session's own settings are part of the key,
        as sessions that share the settings may differ in them."""
        parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
        key = (
            parts.scheme,
            parts.netloc,
            _frozen(proxies or {}),
            stream,
            _frozen(verify),
            _frozen(cert),
            self.trust_env,
            _frozen(self.proxies),
            self.stream,
            _frozen(self.verify),
            _frozen(self.cert),
        )

        def read() -> Dict[str, Any]:
            merged = super(TokenSafeSession, self).merge_environment_settings
            return dict(merged(url, proxies, stream, verify, cert))

        return self._environment.merged(key, read)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        headers = prepared_request.headers
        old_url, new_url = response.request.url, prepared_request.url
        if TOKEN_HEADER in headers and self.should_strip_auth(old_url, new_url):  # type: ignore[no-untyped-call]
            del headers[TOKEN_HEADER]


@functools.lru_cache(maxsize=1)
def _truststore() -> Any:
    """The ``truststore`` module, or ``None``: looked for once per process (a run makes
    a client per task, and a failed import searches the path again every time, under
    the import lock every thread shares)."""
    try:
        return importlib.import_module("truststore")
    except ImportError:
        return None


def system_ssl_context() -> Optional[ssl.SSLContext]:
    """The operating system's trust store through ``truststore`` (ArcGIS Pro 3.3+), if any."""
    truststore = _truststore()
    if truststore is None:
        return None  # requests' default: certifi
    context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return context


def retry_policy(retries: int, methods: Iterable[str], backoff: float) -> Retry:
    """urllib3's retry policy for *methods*: connect, read and 502/503/504 alike."""
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


def build_session(
    idempotent_urls: Iterable[str],
    *,
    verify: Union[bool, str],
    retries: int,
    backoff: float,
    user_agent: str,
    environment: Optional[EnvironmentSettings] = None,
) -> Tuple[TokenSafeSession, Union[bool, str]]:
    """A session with the retry policy mounted, and the ``verify`` value to send with it.

    :param idempotent_urls: URL prefixes where POST is retried too.
    :param verify: ``True`` (system trust store through ``truststore`` when installed,
        else certifi), ``False``, or a CA bundle path *added* to that store.
    :param environment: environment settings shared with other sessions (else its own).
    :raises OSError: when the CA bundle cannot be read.
    """
    session = TokenSafeSession(environment)
    context = None
    if verify is True:
        context = system_ssl_context()
    elif isinstance(verify, str):
        # --ca-bundle adds that bundle to the usual trust store (docs/design.md §7).
        context = system_ssl_context() or ssl.create_default_context(cafile=certifi.where())
        context.load_verify_locations(cafile=verify)
        verify = True
    plain = SSLContextAdapter(retry_policy(retries, SAFE_METHODS, backoff), context)
    idempotent = SSLContextAdapter(retry_policy(retries, (*SAFE_METHODS, "POST"), backoff), context)
    session.mount("http://", plain)
    session.mount("https://", plain)
    for prefix in idempotent_urls:  # the longest matching prefix wins in requests
        session.mount(prefix, idempotent)
    session.headers["User-Agent"] = f"{user_agent} {requests.utils.default_user_agent()}"
    return session, verify


# --------------------------------------------------------------------------- errors


class _ErrorMapper:
    """The context manager :func:`mapped_errors` returns (never swallows an exception)."""

    def __init__(self, where: str, timeout: Tuple[float, float], retries: int) -> None:
        self._where, self._timeout, self._retries = where, timeout, retries
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        if isinstance(exc, TRANSPORT_EXCEPTIONS):
            elapsed = time.monotonic() - self._started
            failure = transport_error(exc, self._where, self._timeout, self._retries, elapsed)
            # from None: the original's text holds URLs (and maybe a token) and stays hidden.
            raise failure from None


def mapped_errors(where: str, timeout: Tuple[float, float], retries: int) -> _ErrorMapper:
    """A context manager that turns any transport exception raised inside into the
    matching wmsync error; wmsync errors and everything else pass through.

    :param where: the redacted URL the messages name.
    :param timeout: the ``(connect, read)`` timeout the request ran with.
    :param retries: how often urllib3 may have retried (to tell the truth about waits).
    """
    return _ErrorMapper(where, timeout, retries)


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


def _waited(limit: float, kind: str, tries: int, elapsed: float) -> str:
    """'no answer within 3 s, 4 tries over 15 s': what the user actually waited."""
    if tries > 1:
        spent = f"{elapsed:.0f}" if elapsed >= 10 else f"{elapsed:.1f}"
        return f"{kind} within {limit:g} s, {tries} tries over {spent} s"
    return f"{kind} within {limit:g} s"


def transport_error(
    exc: BaseException,
    where: str,
    timeout: Tuple[float, float],
    retries: int = 0,
    elapsed: float = 0.0,
) -> WMSyncError:
    """The wmsync error for a requests/urllib3/http.client exception."""
    errors = requests.exceptions
    u3 = urllib3.exceptions
    chain = _chain(exc)
    why = _reason(chain)
    connect_s, read_s = timeout
    # urllib3 wraps the last failure in MaxRetryError once its retries are used up.
    tries = retries + 1 if any(isinstance(e, u3.MaxRetryError) for e in chain) else 1
    # requests reports a read timeout as ConnectionError once urllib3's retries are
    # used up (MaxRetryError wrapping ReadTimeoutError), and during a streamed body:
    # look down the chain. NewConnectionError is a ConnectTimeoutError by inheritance.
    if isinstance(exc, errors.ConnectTimeout) or any(
        isinstance(e, u3.ConnectTimeoutError) and not isinstance(e, u3.NewConnectionError)
        for e in chain
    ):
        return TimedOut(_waited(connect_s, "could not connect", tries, elapsed), where)
    if isinstance(exc, errors.Timeout) or any(isinstance(e, u3.ReadTimeoutError) for e in chain):
        text = _waited(read_s, "no answer", tries, elapsed)
        return TimedOut(text if tries > 1 else f"{text} (read timeout)", where)
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
