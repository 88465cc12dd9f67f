"""Where the client gets its ArcGIS token from.

A client holds a :class:`TokenSource`: ``get()`` gives the token to send (or ``None``
for an open server), ``refresh()`` is called once when the server answers 498
(invalid or expired token) and says whether a retry is worth it. Two sources cover
the toolbox and the command line:

- :class:`StaticToken`: a fixed text (``--token``, ``WMSYNC_TOKEN``); cannot refresh.
- :class:`CallableToken`: a function that fetches a token (``arcpy.GetSigninToken``,
  a token URL); refreshing calls it again.

:func:`as_token_source` turns whatever a caller passes as ``token=`` into a source.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Optional, Protocol, Union, runtime_checkable


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


def _token_text(value: Any) -> Optional[str]:
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
                self._token = _token_text(self._fetch())
                self._fetched = True
            return self._token

    def refresh(self) -> bool:
        """Fetch again; ``True`` when that gave a token different from the old one."""
        with self._lock:
            old = self._token
            self._token = _token_text(self._fetch())
            self._fetched = True
            return self._token is not None and self._token != old

    def __repr__(self) -> str:
        return f"CallableToken({getattr(self._fetch, '__name__', 'fetch')})"


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

    from .errors import AuthenticationError, ConnectionFailed, ProtocolError, server_error

    form = {
        "username": username,
        "password": password,
        "client": "requestip",
        "expiration": str(expiration_minutes),
        "f": "json",
    }
    failure: Optional[Exception] = None
    try:
        answer = requests.post(token_url, data=form, timeout=(10.0, timeout), verify=verify,
                               allow_redirects=False)
        payload = answer.json()
    except requests.RequestException as exc:
        failure = ConnectionFailed(f"cannot reach the token service ({type(exc).__name__})",
                                   token_url)
    except ValueError:
        failure = ProtocolError("the token service did not answer JSON", token_url)
    if failure is not None:
        raise failure
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
