"""What every part of the exchange package shares: the format's names and limits, the
document header and the type of a document's source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, FrozenSet, Union

from ..model import KINDS

#: The document version this package writes and reads.
VERSION = "1"
#: Largest document (after gzip decompression) a reader accepts unless told otherwise.
DEFAULT_MAX_BYTES = 2 * 1024**3

ROOT = "JobExchange"
DELETED = "Deleted"
NOTE = "Note"

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

CHUNK = 64 * 1024
XML_SPACE = " \t\r\n"
CHILD_TAGS: FrozenSet[str] = frozenset((*KINDS, DELETED))


@dataclass(frozen=True)
class ExchangeHeader:
    """The root's attributes: who exported, which generations the document covers."""

    repository: str
    generation: int
    since_gen: int
    export_time: int
    version: str = VERSION
