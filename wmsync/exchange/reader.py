"""Reading an exchange document as a stream: :class:`DocumentReader`, the reference
reader, which validates every element and names the line and element of any error."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

from lxml import etree

from ..errors import ExchangeFormatError
from ..model import Element
from .checks import fast_shapes, fast_valid
from .common import (
    CHILD_TAGS,
    DEFAULT_MAX_BYTES,
    ROOT,
    XML_SPACE,
    ExchangeHeader,
    PathOrFile,
)
from .elements import read_header, schema_error, to_element, to_record
from .parsers import new_parser
from .schema import element_schema
from .source import Replay, open_source

_ELEMENT_RE = re.compile(r"^Element '([^']+)'")


def _line(node: etree._Element) -> Optional[int]:
    # lxml-stubs declare sourceline as "..." (untyped); it is Optional[int].
    line: Any = node.sourceline
    return int(line) if line else None


def _is_space(text: Optional[str]) -> bool:
    return not text or not text.strip(XML_SPACE)


class DocumentReader:
    """An open exchange document: ``header`` at once, then the elements one at a time.

    Iterate it once; each item is a :class:`~wmsync.model.Element`. Elements already
    handed out are dropped from the parser's tree, so memory does not grow with the
    document. Files the reader opened are closed when the document ends, on the first
    error, on :meth:`close` and on leaving a ``with`` block.

    :ivar header: the :class:`ExchangeHeader`, read on opening.
    :ivar count: how many elements have been handed out so far.
    :ivar line: the line the element last handed out starts on (``None`` before).
    :raises ExchangeFormatError: on opening or while iterating, for any invalid input.
    """

    header: ExchangeHeader

    def __init__(self, source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.count = 0
        self.line: Optional[int] = None
        self._closers: List[Any] = []
        self._open_tags: List[str] = []
        self._events: Optional[Iterator[Tuple[str, etree._Element]]] = None
        self._root: Optional[etree._Element] = None
        self._previous: Optional[etree._Element] = None
        self._done = False
        try:
            stream = self._open(source)
            self._schema = element_schema()
            self._shapes = fast_shapes()
            self._events = new_parser(stream=stream, events=("start", "end"))
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    # -- opening

    def _open(self, source: PathOrFile) -> Replay:
        return open_source(source, self.max_bytes, self._closers)

    def _read_header(self) -> ExchangeHeader:
        try:
            _, root = self._next_event()
        except StopIteration:
            raise ExchangeFormatError("not an XML document: no root element") from None
        # lxml-stubs type attribute names and values as str | bytes; lxml gives str.
        attrib: Dict[str, str] = dict(root.items())  # type: ignore[arg-type]
        header = read_header(str(root.tag), attrib, _line(root))
        self._root = root
        return header

    # -- iterating

    def __iter__(self) -> DocumentReader:
        return self

    def __next__(self) -> Element:
        if self._done:
            raise StopIteration
        try:
            return self._next_element()
        except BaseException:  # the end (StopIteration) or an error: release the files
            self.close()
            raise

    def _next_element(self) -> Element:
        root = self._root
        assert root is not None
        while True:
            try:
                event, node = self._next_event()
            except StopIteration:
                raise ExchangeFormatError(
                    "truncated document: the root element is not closed",
                    None,
                    self._open_tags[-1] if self._open_tags else ROOT,
                ) from None
            if event == "start":
                continue
            depth = len(self._open_tags)
            if depth == 0:  # the root ended
                self._check_text(root)
                while True:  # only an error can follow the root's end
                    try:
                        self._next_event()
                    except StopIteration:
                        break
                raise StopIteration
            if depth == 1:  # a child of the root ended
                self._check_text(root)
                element = self._to_element(node)
                self.line = _line(node)
                node.clear()
                while node.getprevious() is not None:
                    del root[0]
                self._previous = node
                self.count += 1
                return element

    def _check_text(self, root: etree._Element) -> None:
        """Only white space may stand between the root's children."""
        previous = self._previous
        if previous is None:
            if not _is_space(root.text):
                raise ExchangeFormatError("text not allowed here", _line(root), ROOT)
        elif not _is_space(previous.tail):
            raise ExchangeFormatError("text not allowed here", _line(previous), ROOT)

    def _next_event(self) -> Tuple[str, etree._Element]:
        assert self._events is not None
        try:
            event, node = next(self._events)
        except etree.LxmlError as exc:
            raise self._translate(exc) from exc
        if event == "start":
            self._open_tags.append(str(node.tag))
        else:
            self._open_tags.pop()
        return event, node

    def _translate(self, exc: etree.LxmlError) -> ExchangeFormatError:
        message = str(getattr(exc, "msg", "") or exc)
        line = getattr(exc, "lineno", None) or None
        match = _ELEMENT_RE.match(message)
        if match:
            element: Optional[str] = match.group(1)
        else:
            element = self._open_tags[-1] if self._open_tags else None
        return ExchangeFormatError(message, line, element)

    def _to_element(self, node: etree._Element) -> Element:
        tag = str(node.tag)
        line = _line(node)
        if tag not in CHILD_TAGS:
            raise ExchangeFormatError(f"unexpected element <{tag}>", line, tag)
        # lxml-stubs type attribute names and values as str | bytes; lxml gives str.
        attrib: Dict[str, str] = dict(node.items())  # type: ignore[arg-type]
        shape = self._shapes.get(tag)
        if shape is not None and fast_valid(node, attrib, shape):
            valid = True  # what the compiled checks accept, the schema accepts
        else:
            try:
                valid = self._schema.validate(node)
            except etree.LxmlError as exc:  # e.g. an unresolved entity reference inside
                raise ExchangeFormatError(f"cannot validate: {exc}", line, tag) from exc
        if not valid:
            message, error_line = schema_error(self._schema)
            match = _ELEMENT_RE.match(message)  # names the inner element when it failed
            if not error_line or error_line >= 65535:  # libxml2 caps validation lines
                error_line = line
            raise ExchangeFormatError(message, error_line, match.group(1) if match else tag)
        note = (node[0].text or "") if len(node) else None  # only <Note>, in a <Job>
        try:
            record = to_record(tag, attrib, note)
        except ValueError as exc:
            raise ExchangeFormatError(str(exc), line, tag) from None
        try:
            return to_element(record)
        except ValueError as exc:
            raise ExchangeFormatError(f"invalid vv {record[3]!r}: {exc}", line, tag) from None

    # -- closing

    def close(self) -> None:
        """Stop reading and close whatever the reader opened (not a caller's file)."""
        self._done = True
        self._events = None
        self._root = None
        self._previous = None
        while self._closers:
            self._closers.pop().close()

    def __enter__(self) -> DocumentReader:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def read_document(source: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES) -> DocumentReader:
    """Open an exchange document (plain or gzip) for streaming.

    :param source: a path, or a binary file object (left open).
    :param max_bytes: refuse documents larger than this, counted after decompression.
    :returns: a :class:`DocumentReader`; its ``header`` is already read.
    :raises ExchangeFormatError: the start of the document is not valid.
    """
    return DocumentReader(source, max_bytes=max_bytes)


def validate_file(
    path: PathOrFile, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Tuple[ExchangeHeader, int]:
    """Stream a whole document through the reader.

    :returns: the header and the number of elements.
    :raises ExchangeFormatError: the document is not valid.
    """
    with read_document(path, max_bytes=max_bytes) as reader:
        for _ in reader:
            pass
        return reader.header, reader.count
