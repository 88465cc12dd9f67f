"""A document's bytes, as both readers get them: gunzipped when gzip, counted against a
limit, and past a prolog checked for a DOCTYPE (refused) and a non-UTF-8 declaration."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from typing import Any, List

from ..errors import ExchangeFormatError
from .common import CHUNK, PathOrFile

#: Everything before the root start tag (declaration, comments) must fit in this.
MAX_PROLOG_BYTES = 64 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_ENCODING_RE = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]*)["']""")


class Replay:
    """A read-only stream that returns *prefix* first, then the rest of *stream*."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0 or size >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(self._stream.read(CHUNK if size is None or size < 0 else size))


class _Limited:
    """Counts what is read and refuses more than *max_bytes*; translates gzip errors."""

    def __init__(self, stream: Any, max_bytes: int, compressed: bool) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._compressed = compressed
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        try:
            data = bytes(self._stream.read(size))
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            if not self._compressed:
                raise
            raise ExchangeFormatError(f"corrupt gzip data: {exc}") from None
        self.count += len(data)
        if self.count > self._max_bytes:
            raise ExchangeFormatError(f"document larger than the limit of {self._max_bytes} bytes")
        return data


def _scan_prolog(stream: _Limited) -> bytes:
    """Read up to the root start tag, refusing any DOCTYPE; return the bytes read.

    Only the XML declaration, comments, processing instructions and white space may come
    before the root. The parser later decodes the input as UTF-8 whatever it declares,
    so this byte-level reading sees what the parser will see.
    """
    buf = b""
    pos = 0
    eof = False

    def line() -> int:
        return buf.count(b"\n", 0, pos) + 1

    while True:
        if pos == 0 and buf.startswith(_UTF8_BOM):
            pos = len(_UTF8_BOM)
        while pos < len(buf) and buf[pos : pos + 1] in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
        need_more = False
        if len(buf) - pos < 4:
            need_more = not eof
            if eof and pos >= len(buf):
                raise ExchangeFormatError("not an XML document: no root element", line())
        if not need_more:
            if buf[pos : pos + 1] != b"<":
                raise ExchangeFormatError("not an XML document", line())
            second = buf[pos + 1 : pos + 2]
            if second == b"?":
                end = buf.find(b"?>", pos + 2)
                if end < 0:
                    need_more = True
                else:
                    _check_declaration(buf[pos : end + 2], line())
                    pos = end + 2
                    continue
            elif second == b"!":
                if buf.startswith(b"<!--", pos):
                    end = buf.find(b"-->", pos + 4)
                    if end < 0:
                        need_more = True
                    else:
                        pos = end + 3
                        continue
                else:
                    raise ExchangeFormatError("DOCTYPE not allowed", line())
            else:
                return buf  # the root start tag: lxml takes it from here
        if eof:
            raise ExchangeFormatError("not an XML document: no root element", line())
        if len(buf) >= MAX_PROLOG_BYTES:
            raise ExchangeFormatError(
                f"more than {MAX_PROLOG_BYTES} bytes before the root element", line()
            )
        data = stream.read(CHUNK)
        if data:
            buf += data
        else:
            eof = True


def open_source(source: PathOrFile, max_bytes: int, closers: List[Any]) -> Replay:
    """The document's bytes (gunzipped, counted, past a prolog without DOCTYPE); what it
    opens is appended to *closers*."""
    if isinstance(source, (str, os.PathLike)):
        raw: Any = open(os.fspath(source), "rb")  # closed by the caller, via closers
        closers.append(raw)
    else:
        raw = source
    magic = b""
    while len(magic) < 2:
        data = raw.read(2 - len(magic))
        if not data:
            break
        magic += data
    stream: Any = Replay(magic, raw)
    compressed = magic == _GZIP_MAGIC
    if compressed:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
        closers.append(stream)
    limited = _Limited(stream, max_bytes, compressed)
    return Replay(_scan_prolog(limited), limited)


def _check_declaration(pi: bytes, line: int) -> None:
    if not re.match(rb"<\?xml[ \t\r\n]", pi):
        return
    match = _ENCODING_RE.search(pi)
    if match and match.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        encoding = match.group(1).decode("ascii")
        raise ExchangeFormatError(f"encoding must be UTF-8, not {encoding!r}", line)
