"""Per-server credentials for a cluster whose offices run their own ArcGIS Server
(``wmsync sync --credentials FILE``, docs/design.md §5 and §7).

The file is JSON: a ``servers`` list, one entry per server URL prefix, each naming
where its secret is, never the secret itself::

    {
      "servers": [
        {"url": "https://ohio.example.com/arcgis",
         "token_env": "OHIO_TOKEN"},
        {"url": "https://az.example.com/arcgis",
         "token_url": "https://az.example.com/portal/sharing/rest/generateToken",
         "username": "wmsync", "password_file": "/etc/wmsync/az.password"}
      ]
    }

An entry has ``url`` and either a token (``token_env`` or ``token_file``) or a token
URL with ``username`` and a password (``password_env`` or ``password_file``). A key
holding a secret inline (``token``, ``password``) refuses the whole file, naming the key
and its line: the file is typically readable by more people than the secret should be.
The longest matching prefix wins (on whole path segments, scheme and host compared
case-insensitively); a server no entry matches gets the caller's default token.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from .auth import CallableToken, StaticToken, TokenLike, TokenSource, generate_token
from .errors import WMSyncError

__all__ = ["Credentials", "CredentialsError", "load_credentials", "per_url_factory"]

_INLINE_SECRETS = ("token", "password", "secret", "api_key", "apikey")
_KNOWN = {
    "url",
    "token_env",
    "token_file",
    "token_url",
    "username",
    "password_env",
    "password_file",
    "comment",
}


class CredentialsError(WMSyncError):
    """The credentials file cannot be used; the message names the file, entry and key."""


@dataclass(frozen=True)
class _Entry:
    prefix: Tuple[str, str, str]  # scheme, host[:port], path (casefolded, no trailing /)
    source: TokenSource


class Credentials:
    """Token sources by server URL prefix; see the module text for the file."""

    def __init__(self, entries: List[_Entry], secrets_: List[str]) -> None:
        self._entries = sorted(entries, key=lambda e: len(e.prefix[2]), reverse=True)
        #: secrets read from the files and environment, for the log's redaction
        self.secrets = list(secrets_)

    def token_for(self, url: str, default: TokenLike = None) -> TokenLike:
        """The token source of the longest prefix matching *url*, else *default*."""
        key = _key(url)
        if key is not None:
            for entry in self._entries:
                if _matches(entry.prefix, key):
                    return entry.source
        return default

    def __len__(self) -> int:
        return len(self._entries)


def _key(url: str) -> Optional[Tuple[str, str, str]]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        return None
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host, parts.path.rstrip("/").casefold()


def _matches(prefix: Tuple[str, str, str], key: Tuple[str, str, str]) -> bool:
    """Same scheme and host, and the prefix's path is the URL's path or a parent of it
    (``/arcgis`` matches ``/arcgis/rest/...`` but not ``/arcgis2``)."""
    if prefix[:2] != key[:2]:
        return False
    return key[2] == prefix[2] or key[2].startswith(prefix[2] + "/")


def _line_of(text: str, key: str, occurrence: int = 0) -> int:
    """The line of the *occurrence*-th ``"key":`` in *text* (1-based; 0 if not found)."""
    found = list(re.finditer(r'"' + re.escape(key) + r'"\s*:', text))
    if not found:
        return 0
    match = found[min(occurrence, len(found) - 1)]
    return text.count("\n", 0, match.start()) + 1


def _read_secret(
    entry: Mapping[str, Any], env_key: str, file_key: str, where: str, base: str
) -> Optional[str]:
    """The secret an entry refers to by *env_key* (an environment variable) or
    *file_key* (a file, relative to the credentials file's folder); None when neither."""
    if env_key in entry and file_key in entry:
        raise CredentialsError(f"{where}: give {env_key} or {file_key}, not both")
    if env_key in entry:
        name = str(entry[env_key])
        value = os.environ.get(name, "")
        if not value:
            raise CredentialsError(
                f"{where}: environment variable {name} ({env_key}) is not set or empty"
            )
        return value
    if file_key in entry:
        path = os.path.join(base, os.path.expanduser(str(entry[file_key])))
        try:
            with open(path, encoding="utf-8-sig") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise CredentialsError(
                f"{where}: cannot read {file_key} {path!r}: {exc.strerror or exc}"
            ) from None
        if not value:
            raise CredentialsError(f"{where}: {file_key} {path!r} is empty")
        return value
    return None


def load_credentials(
    path: str,
    *,
    verify: Union[bool, str] = True,
    timeout: float = 60.0,
    on_secret: Optional[Callable[[str], None]] = None,
) -> Credentials:
    """Read and check a credentials file; every secret it refers to is read now, so a
    missing one stops the run before it starts. Tokens from a token URL are fetched on
    first use and again when a server answers 498.

    :param on_secret: called with every token fetched later (for the log's redaction).
    :raises CredentialsError: naming the file, the entry and what is wrong with it.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read the credentials file {path!r}: {exc.strerror or exc}"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CredentialsError(f"{path}: not JSON: {exc}") from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, list):
        raise CredentialsError(f'{path}: expected an object with a "servers" list')
    base = os.path.dirname(os.path.abspath(path))
    entries: List[_Entry] = []
    secrets_: List[str] = []
    seen: Dict[Tuple[str, str, str], int] = {}
    counts: Dict[str, int] = {}
    for index, entry in enumerate(servers, start=1):
        where = f"{path}, server {index}"
        if not isinstance(entry, dict):
            raise CredentialsError(f"{where}: expected an object")
        for key in entry:
            occurrence = counts.get(key, 0)
            counts[key] = occurrence + 1
            if key.lower() in _INLINE_SECRETS:
                refer = (
                    f"{key}_env or {key}_file"
                    if key.lower() in ("token", "password")
                    else "an *_env or *_file key"
                )
                raise CredentialsError(
                    f"{path}, line {_line_of(text, key, occurrence)}: {key!r} holds a secret "
                    f"inline; refer to it instead ({refer})"
                )
            if key not in _KNOWN:
                raise CredentialsError(
                    f"{path}, line {_line_of(text, key, occurrence)}: unknown key {key!r}"
                )
        url = entry.get("url")
        prefix = _key(url) if isinstance(url, str) else None
        if prefix is None:
            raise CredentialsError(f"{where}: 'url' must be an http(s) URL prefix")
        if prefix in seen:
            raise CredentialsError(f"{where}: {url!r} is listed twice (also server {seen[prefix]})")
        seen[prefix] = index
        source = _source(entry, where, base, secrets_, verify, timeout, on_secret)
        entries.append(_Entry(prefix, source))
    return Credentials(entries, secrets_)


def _source(
    entry: Mapping[str, Any],
    where: str,
    base: str,
    secrets_: List[str],
    verify: Union[bool, str],
    timeout: float,
    on_secret: Optional[Callable[[str], None]],
) -> TokenSource:
    token = _read_secret(entry, "token_env", "token_file", where, base)
    if "token_url" not in entry:
        if token is None:
            raise CredentialsError(f"{where}: give token_env, token_file or token_url")
        if "username" in entry or "password_env" in entry or "password_file" in entry:
            raise CredentialsError(f"{where}: username and password go with token_url")
        secrets_.append(token)
        return StaticToken(token)
    if token is not None:
        raise CredentialsError(f"{where}: give a token or a token_url, not both")
    token_url, username = entry.get("token_url"), entry.get("username")
    if not isinstance(token_url, str) or _key(token_url) is None:
        raise CredentialsError(f"{where}: 'token_url' must be an http(s) URL")
    if not isinstance(username, str) or not username:
        raise CredentialsError(f"{where}: token_url needs a 'username'")
    password = _read_secret(entry, "password_env", "password_file", where, base)
    if password is None:
        raise CredentialsError(f"{where}: token_url needs password_env or password_file")
    secrets_.append(password)

    def fetch() -> str:
        fetched = generate_token(token_url, username, password, verify=verify, timeout=timeout)
        if on_secret is not None:
            on_secret(fetched)
        return fetched

    return CallableToken(fetch)


def per_url_factory(
    credentials: Credentials,
    default: TokenLike,
    factory_for: Callable[[TokenLike], Callable[[str], Any]],
) -> Callable[[str], Any]:
    """A client factory that gives each server URL the token its entry names (else
    *default*): *factory_for(token)* makes the factory of one token (the engine's), and
    one is made per token source, so a refresh after a 498 serves all of its clients."""
    made: Dict[int, Callable[[str], Any]] = {}
    lock = threading.Lock()

    def make(url: str) -> Any:
        token = credentials.token_for(url, default)
        with lock:
            factory = made.get(id(token))
            if factory is None:
                factory = made[id(token)] = factory_for(token)
        return factory(url)

    return make
