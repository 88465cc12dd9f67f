"""One request's parameters, as the handlers read them: :class:`Call`."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from werkzeug.datastructures import CombinedMultiDict, MultiDict
from werkzeug.wrappers import Request

from . import shapes
from .envelope import BadRequest
from .limits import checked_text


class Call:
    """One request's parameters (query string and form together).

    :ivar request: the werkzeug request (headers, body, files).
    :ivar root: the service root URL as the client reached it.
    :ivar match: the values the route took from the path.
    """

    def __init__(self, request: Request, root: str, match: Mapping[str, Any]) -> None:
        self.request = request
        self.root = root
        self.match = match
        if request.method == "POST" and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            self.params: MultiDict[str, str] = CombinedMultiDict([request.args, request.form])
        else:
            self.params = request.args

    def text(self, name: str) -> Optional[str]:
        """A parameter's text, or ``None`` when absent.

        :raises BadRequest: it is longer than :data:`~wmsync.emulator.limits.MAX_TEXT_CHARS`.
        """
        return checked_text(name, self.params.get(name))

    def structured(self, name: str) -> Optional[str]:
        """A parameter holding a JSON object (``properties``): its text, unchecked for
        length; the caller checks each text value inside it."""
        return self.params.get(name)

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None or not value.strip():
            raise BadRequest(f"Missing required parameter: {name}", [name])
        return value

    def integer(self, name: str) -> Optional[int]:
        return shapes.parse_int(name, self.params.get(name))

    def boolean(self, name: str, default: bool = False) -> bool:
        return shapes.parse_bool(name, self.params.get(name), default)

    def user(self) -> str:
        """The acting user (``DOMAIN|name`` -> ``DOMAIN\\name``); required."""
        return shapes.user_name(self.required("user").strip())

    def ids(self, name: str = "jobs") -> List[int]:
        text = self.required(name)
        ids = []
        for part in text.split(","):
            value = shapes.parse_int(name, part)
            if value is not None:
                ids.append(value)
        if not ids:
            raise BadRequest(f"Missing required parameter: {name}", [name])
        return ids
