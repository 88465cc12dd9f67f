"""The limits the REST API states and enforces on what a request may carry.

:data:`MAX_TEXT_CHARS` (defined once, in :mod:`wmsync.model`, for the exchange too): every text
parameter (names, descriptions, notes, comments ...) and every text value inside a
``properties`` object longer than this is refused with error 400 naming the field. It
sits far below libxml2's 10 MB limit on one text node, so anything the API accepts can
travel in an exchange document and be read back.
"""

from __future__ import annotations

from typing import Optional

from wmsync.model import MAX_TEXT_CHARS  # one limit for the REST API and the exchange

from .envelope import BadRequest

__all__ = ["MAX_TEXT_CHARS", "checked_text"]


def checked_text(name: str, value: Optional[str]) -> Optional[str]:
    """*value* unchanged, once it is known to fit :data:`MAX_TEXT_CHARS`.

    :raises BadRequest: naming *name*, when the text is longer.
    """
    if value is not None and len(value) > MAX_TEXT_CHARS:
        raise BadRequest(
            f"Invalid value for parameter {name}: {len(value)} characters, more than "
            f"the limit of {MAX_TEXT_CHARS}",
            [name],
        )
    return value
