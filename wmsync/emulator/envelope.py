"""ArcGIS error envelopes: one exception class per code, each rendering itself.

ArcGIS answers errors with HTTP 200 and ``{"error": {"code", "message", "details"}}``;
these classes are werkzeug ``HTTPException`` subclasses whose response is that envelope,
so a handler just raises ``NotFound("job 7 does not exist")``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response


class ApiError(HTTPException):
    """An error the client sees as the ArcGIS error envelope (HTTP status 200)."""

    error_code = 500
    default_message = "error"

    def __init__(self, message: Optional[str] = None, details: Sequence[str] = ()) -> None:
        self.message = message or self.default_message
        self.details = [str(d) for d in details]
        super().__init__(self.message)

    def envelope(self) -> Dict[str, Any]:
        """The ``{"error": {...}}`` body."""
        return {
            "error": {"code": self.error_code, "message": self.message, "details": self.details}
        }

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return Response(json.dumps(self.envelope()), status=200, mimetype="application/json")


class BadRequest(ApiError):
    """400: a missing or invalid parameter (named in the message), an invalid document."""

    error_code = 400
    default_message = "Invalid request"


class TokenRequired(ApiError):
    """499: the server needs a token and the request carried none (as ArcGIS Server)."""

    error_code = 499
    default_message = "Token Required"


class InvalidToken(ApiError):
    """498: the request's token is wrong or expired (as ArcGIS Server)."""

    error_code = 498
    default_message = "Invalid Token"


class Forbidden(ApiError):
    """403: a privilege the user lacks."""

    error_code = 403
    default_message = "Access denied"


class NotFound(ApiError):
    """404: unknown service, resource, job, hold, user or node."""

    error_code = 404
    default_message = "Not found"


class Conflict(ApiError):
    """409: the request conflicts with the repository's state."""

    error_code = 409
    default_message = "Conflict"


class ServerFault(ApiError):
    """500: something unexpected; the details stay in the server's log."""

    error_code = 500
    default_message = "Internal server error"
