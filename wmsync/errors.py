"""Every error wmsync raises, under one root.

::

    WMSyncError
     +-- ValueTableError (also ValueError)      a child value table that cannot be read
     +-- ExchangeFormatError (also ValueError)  an exchange document that is not valid
     +-- SyncRefused                             the whole run cannot start (wrong parent name ...)
     +-- Cancelled                               the user asked to stop
 +-- ElementsLeftOut                         elements that cannot travel were left out
     +-- RepositoryError                         something went wrong talking to one repository
          +-- TransportError                     no usable HTTP answer
          |    +-- ConnectionFailed
          |    +-- TimedOut
          +-- ProtocolError                      an answer that is not the WMServer protocol
          |    +-- MissingExtensions             no WorkflowSync replication extensions
          +-- ServerError                        the ArcGIS error envelope ``{"error": {...}}``
               +-- BadRequest          400
               +-- AuthenticationError 401/498/499
               +-- PermissionDenied    403
               +-- NotFound            404
               +-- ConflictError       409
               +-- InternalServerError 500 and anything else

Messages are built from *redacted* URLs only (see :func:`redact_url`): a token can never
reach a message, a log or a report through an exception.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Type
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = {"token", "password", "pwd", "passwd", "secret", "key", "apikey", "api_key"}
_REDACTED = "***"


def redact_url(url: str) -> str:
    """Return *url* without credentials: secret query parameters and user:password@.

    :param url: any URL, possibly with ``token=`` in its query string.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(?i)(token|password)=[^&\s]*", r"\1=" + _REDACTED, url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = _REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, _REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class WMSyncError(Exception):
    """Root of every error raised by wmsync."""


class ValueTableError(WMSyncError, ValueError):
    """The child value table cannot be read; ``problems`` lists every bad row.

    Each problem is a human-readable line naming the row number (1-based) and the value.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: List[str] = list(problems)
        super().__init__("; ".join(self.problems) or "invalid value table")


class ExchangeFormatError(WMSyncError, ValueError):
    """An exchange document is not valid; names the line and element where it failed."""

    def __init__(self, message: str, line: Optional[int] = None, element: Optional[str] = None):
        self.reason = message  # without the location (which ``line``/``element`` hold)
        self.line = line
        self.element = element
        where = []
        if line is not None:
            where.append(f"line {line}")
        if element:
            where.append(f"element <{element}>")
        text = f"{message} ({', '.join(where)})" if where else message
        super().__init__(text)


class SyncRefused(WMSyncError):
    """The run cannot start at all: nothing was changed (status -1)."""


class Cancelled(WMSyncError):
    """The user cancelled the run; it stopped at a safe point."""


class ElementsLeftOut(WMSyncError):
    """A direction sent and imported everything except ``left_out``, elements that
    cannot travel (:class:`wmsync.exchange.LeftOut`); its watermark stays, so the next
    run retries them, and the child is reported failed with this message."""

    def __init__(self, message: str, left_out: Sequence[object]) -> None:
        self.left_out = list(left_out)
        super().__init__(message)


class RepositoryError(WMSyncError):
    """A failure talking to one repository; ``url`` is already redacted."""

    def __init__(self, message: str, url: str = "") -> None:
        self.url = redact_url(url) if url else ""
        self.message = message
        super().__init__(f"{message} [{self.url}]" if self.url else message)


class TransportError(RepositoryError):
    """No usable HTTP answer came back."""


class ConnectionFailed(TransportError):
    """The server could not be reached (refused, reset, DNS, TLS)."""


class TimedOut(TransportError):
    """The server did not answer in time."""


class ProtocolError(RepositoryError):
    """The server answered, but not in the WMServer protocol (HTML, malformed JSON ...)."""


class MissingExtensions(ProtocolError):
    """The server is a WMServer but lacks the WorkflowSync replication extensions."""


class ServerError(RepositoryError):
    """The server answered with the ArcGIS error envelope."""

    def __init__(
        self,
        code: int,
        message: str,
        details: Optional[Sequence[str]] = None,
        url: str = "",
    ) -> None:
        self.code = code
        self.details: List[str] = [str(d) for d in (details or [])]
        text = f"error {code}: {message}"
        if self.details:
            text += " (" + "; ".join(self.details) + ")"
        super().__init__(text, url)
        self.message = message


class BadRequest(ServerError):
    """400: a missing or invalid parameter, or an invalid document."""


class AuthenticationError(ServerError):
    """401/498/499: token required, invalid or expired."""


class PermissionDenied(ServerError):
    """403: the user lacks the privilege (or the token is refused)."""


class NotFound(ServerError):
    """404: unknown resource, job or node."""


class ConflictError(ServerError):
    """409: the request conflicts with the repository's state."""


class InternalServerError(ServerError):
    """500 or any code the protocol does not name."""


SERVER_ERRORS: Dict[int, Type[ServerError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: ConflictError,
    498: AuthenticationError,
    499: AuthenticationError,
    500: InternalServerError,
}


def server_error(
    code: int, message: str, details: Optional[Sequence[str]] = None, url: str = ""
) -> ServerError:
    """Build the :class:`ServerError` subclass that matches an envelope's *code*."""
    cls = SERVER_ERRORS.get(code, InternalServerError)
    return cls(code, message, details, url)
