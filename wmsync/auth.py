"""Where the client gets its ArcGIS token from.

A client holds a :class:`TokenSource`: ``get()`` gives the token to send (or ``None``
for an open server), ``refresh()`` is called once when the server answers 498
(invalid or expired token) and says whether a retry is worth it. Two sources cover
the toolbox and the command line:

- :class:`StaticToken`: a fixed text (``--token``, ``WMSYNC_TOKEN``); cannot refresh.
- :class:`CallableToken`: a function that fetches a token (a token URL); refreshing
  calls it again.
- :class:`ThreadBoundToken`: a function that may only be called on one thread
  (``arcpy.GetSigninToken`` on the tool's thread); other threads queue a renewal that
  the owner serves.

:func:`as_token_source` turns whatever a caller passes as ``token=`` into a source.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any, Callable, List, Mapping, Optional, Protocol, Union, runtime_checkable


@runtime_checkable
class TokenSource(Protocol):
    """Anything that hands out a token and may be able to renew it."""

    def get(self) -> Optional[str]:
        """Return the token to send now, or ``None`` to send none."""
        ...

    def refresh(self) -> bool:
        """Try to obtain a new token; return ``True`` when a retry is worth it."""
        ...


class StaticToken:
    """A fixed token: sent as it is, never refreshed."""

    def __init__(self, token: Optional[str]) -> None:
        self._token = token or None

    def get(self) -> Optional[str]:
        """Return the fixed token (``None`` when it is empty)."""
        return self._token

    def refresh(self) -> bool:
        """A fixed token cannot be renewed: always ``False``."""
        return False

    def __repr__(self) -> str:  # never show the token itself
        return "StaticToken(***)" if self._token else "StaticToken(None)"


def token_text(value: Any) -> Optional[str]:
    """Accept a token as text or as ``arcpy.GetSigninToken()``'s ``{"token": ...}``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("token")
        if value is None:
            return None
    if not isinstance(value, str):
        raise TypeError(f"a token source returned {type(value).__name__}, not text")
    return value or None


class CallableToken:
    """A token fetched by calling *fetch*; fetched on first use, again on refresh.

    :param fetch: a function with no arguments returning the token text, a mapping
        with a ``"token"`` key (``arcpy.GetSigninToken()``), or ``None``.
    """

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self._fetch = fetch
        self._token: Optional[str] = None
        self._fetched = False
        self._lock = threading.Lock()

    def get(self) -> Optional[str]:
        """Return the current token, fetching it the first time."""
        with self._lock:
            if not self._fetched:
                self._token = token_text(self._fetch())
                self._fetched = True
            return self._token

    def refresh(self) -> bool:
        """Fetch again; ``True`` when that gave a token different from the old one."""
        with self._lock:
            old = self._token
            self._token = token_text(self._fetch())
            self._fetched = True
            return self._token is not None and self._token != old

    def __repr__(self) -> str:
        return f"CallableToken({getattr(self._fetch, '__name__', 'fetch')})"


class ThreadBoundToken:
    """A token whose *fetch* may only run on the thread that created this source.

    arcpy may only be called from the tool's own thread, but the engine's workers meet
    the 498 (expired) answers. A worker's :meth:`refresh` therefore waits in a queue
    until the owner calls :meth:`serve` (the toolbox does so whenever the engine polls
    it for Cancel, every 0.1 s while work runs); on the owner's thread it renews at once.

    :param fetch: returns the token text or ``{"token": ...}`` (``arcpy.GetSigninToken``).
    :param token: the first token, when the caller fetched it already.
    """

    WAIT_SECONDS = 30.0  # a worker gives up on a renewal the owner never served

    def __init__(self, fetch: Callable[[], Any], token: Optional[str] = None) -> None:
        self._fetch = fetch
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._requests: queue.Queue[threading.Event] = queue.Queue()
        self._token = token if token is not None else token_text(fetch())
        self._seen: List[str] = [self._token] if self._token else []

    def get(self) -> Optional[str]:
        """Return the current token."""
        with self._lock:
            return self._token

    def refresh(self) -> bool:
        """Renew on the owner's thread; ``True`` when the token now differs from before."""
        before = self.get()
        if threading.get_ident() == self._owner:
            self._renew()
        else:
            done = threading.Event()
            self._requests.put(done)
            if not done.wait(self.WAIT_SECONDS):
                return False
        after = self.get()
        return after is not None and after != before

    def serve(self) -> None:
        """Serve the pending renewals of other threads; call on the owner's thread only."""
        while True:
            try:
                done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                self._renew()
            finally:
                done.set()

    def secrets(self) -> List[str]:
        """Every token handed out so far (for scrubbing messages)."""
        with self._lock:
            return list(self._seen)

    def _renew(self) -> None:
        fresh = token_text(self._fetch())
        with self._lock:
            if fresh and fresh != self._token:
                self._token = fresh
                self._seen.append(fresh)

    def __repr__(self) -> str:  # never show the token itself
        return "ThreadBoundToken(***)"


TokenLike = Union[None, str, TokenSource, Callable[[], Any]]


def as_token_source(token: TokenLike) -> Optional[TokenSource]:
    """Turn a ``token=`` argument into a :class:`TokenSource` (``None`` for no token).

    :param token: ``None``, a text, a :class:`TokenSource`, or a function returning one.
    :raises TypeError: for anything else.
    """
    if token is None:
        return None
    if isinstance(token, str):
        return StaticToken(token) if token else None
    if isinstance(token, TokenSource):
        return token
    if callable(token):
        return CallableToken(token)
    raise TypeError(f"token must be text, a TokenSource or a function, not {type(token).__name__}")


def generate_token(
    token_url: str,
    username: str,
    password: str,
    *,
    verify: Union[bool, str] = True,
    timeout: float = 60.0,
    expiration_minutes: int = 60,
) -> str:
    """Ask an ArcGIS Server or Portal ``generateToken`` endpoint for a token.

    The password travels in the POST body only; nothing of it reaches a message.

    :raises AuthenticationError: the endpoint refused the credentials.
    :raises RepositoryError: the endpoint could not be reached or answered nonsense.
    """
    import requests

    from .errors import AuthenticationError, ConnectionFailed, server_error

    form = {
        "username": username,
        "password": password,
        "client": "requestip",
        "expiration": str(expiration_minutes),
        "f": "json",
    }
    failure: Optional[Exception] = None
    try:
        answer = requests.post(
            token_url, data=form, timeout=(10.0, timeout), verify=verify, allow_redirects=False
        )
        content = answer.content or b""  # read here: a broken transfer is a transport error
    except requests.RequestException as exc:
        failure = ConnectionFailed(
            f"cannot reach the token service ({type(exc).__name__})", token_url
        )
    if failure is not None:
        raise failure
    payload = _token_answer(answer, content, token_url)
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        error = payload["error"]
        code = error.get("code")
        code = code if isinstance(code, int) else 401
        message = str(error.get("message") or "token refused")
        if password:  # a service that echoes what it was sent must not leak it through us
            message = message.replace(password, "***")
        raise server_error(code if code in (498, 499, 403) else 401, message, url=token_url)
    token = payload.get("token") if isinstance(payload, Mapping) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(401, "the token service gave no token", url=token_url)
    return token


def _token_answer(answer: Any, content: bytes, token_url: str) -> Any:
    """The token service's JSON; a clear error saying what came instead when it is not."""
    from .errors import ProtocolError

    try:
        return json.loads(content)
    except ValueError:  # also UnicodeDecodeError
        pass
    kind = answer.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    head = content.lstrip()[:15].lower()
    if not content.strip():
        what = "an empty body"
    elif "html" in kind or head.startswith((b"<!doctype html", b"<html")):
        what = "an HTML page"
    elif head.startswith(b"<"):
        what = f"markup ({kind or 'no content type'})"
    else:
        what = f"{kind or 'text without a content type'} that is not JSON"
    status = f"HTTP {answer.status_code} with " if answer.status_code != 200 else ""
    raise ProtocolError(
        f"the token service answered {status}{what}, not JSON: is this a generateToken URL?",
        token_url,
    )
