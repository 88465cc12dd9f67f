"""The job exchange document (JXL): write it as a stream, read and validate it as a stream.

The format is fixed by ``jxl.xsd`` in the ``wmsync`` package (:data:`SCHEMA_PATH`;
docs/internals.md, docs/design.md §4)::

    <JobExchange version="1" repository="Ohio" generation="812" sinceGen="790"
                 exportTime="1754041845000">
      <Job guid="…" id="101" vv="Parent:2 Ohio:1" modified="…" origin="Ohio" name="…">
        <Note>free text</Note></Job>
      <Deleted kind="Hold" guid="…" vv="…" modified="…" origin="…"/>
    </JobExchange>

Neither side ever holds a whole document: :func:`write_document` serializes one element
at a time (as escaped text, flushed every :data:`FLUSH_EVERY` elements), and
:class:`DocumentReader` pulls one element at a time out of :func:`lxml.etree.iterparse`,
validates it and drops it.

Reading is hardened (docs/design.md §7): a DOCTYPE is refused before lxml sees a byte of it
(so no entity trick reaches the parser), entities are never resolved, no DTD is loaded,
nothing is fetched, the input is decoded as UTF-8 whatever it declares, and a counting
wrapper refuses more than ``max_bytes`` of (decompressed) input. gzip input is accepted
transparently. Every problem becomes :class:`~wmsync.errors.ExchangeFormatError` naming
the line and element where it was found.

Why each element is validated on its own rather than with ``iterparse(schema=...)``:
with a schema attached, lxml (6.1 / libxml2 2.14, measured) reports validity errors only
once the whole document has been parsed, always at line 0, and reports a truncated or
malformed document as "no element found (line 0)" or not at all. Validating each child of
the root against the same schema as soon as it ends gives the error at once, with its
line, before the element is handed out.

The modules, one concern each (this package re-exports their public names):

- ``common``: the format's names and limits, :class:`ExchangeHeader`.
- ``parsers``: :func:`new_parser`, the only place an lxml parser is made (hardened).
- ``elements``: the one header reader and element builder every reader uses
  (:func:`read_header`, :func:`to_record`, :func:`to_element`), and the escaping of text
  XML 1.0 cannot hold (:func:`escape_text`, :func:`unescape_text`).
- ``writer``: :func:`write_document` (which leaves out, when asked, an element it cannot
  write), :func:`gzip_file`.
- ``leftout``: :class:`LeftOut`, an element that cannot travel, and writing a document
  again without one element (a receiving server refused it).
- ``schema``: ``jxl.xsd`` as an lxml XMLSchema.
- ``checks``: the schema compiled into fast per-element checks (the XMLSchema decides
  whatever they do not accept).
- ``source``: a document's bytes for both readers: gzip, the size limit, the prolog
  check (no DOCTYPE, UTF-8 only).
- ``reader``: :class:`DocumentReader`, :func:`read_document`, :func:`validate_file`.

The repository's quick reading of large imports is the repository's own concern
(:mod:`wmsync.repository.quick`); it builds its records with :func:`to_record` too.
"""

from __future__ import annotations

from ..errors import ExchangeFormatError
from ..model import vv_from_text
from .common import DEFAULT_MAX_BYTES, DELETED, NOTE, ROOT, VERSION, ExchangeHeader, PathOrFile
from .elements import (
    ESCAPE,
    ESCAPED_FLAG,
    Record,
    escape_text,
    read_header,
    to_element,
    to_record,
    unescape_text,
)
from .leftout import LeftOut
from .parsers import new_parser
from .reader import DocumentReader, read_document, validate_file
from .schema import SCHEMA_PATH
from .source import MAX_PROLOG_BYTES
from .writer import FLUSH_EVERY, gzip_file, write_document

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DELETED",
    "ESCAPE",
    "ESCAPED_FLAG",
    "FLUSH_EVERY",
    "MAX_PROLOG_BYTES",
    "NOTE",
    "ROOT",
    "SCHEMA_PATH",
    "VERSION",
    "DocumentReader",
    "ExchangeFormatError",
    "ExchangeHeader",
    "LeftOut",
    "PathOrFile",
    "Record",
    "escape_text",
    "gzip_file",
    "new_parser",
    "read_document",
    "read_header",
    "to_element",
    "to_record",
    "unescape_text",
    "validate_file",
    "vv_from_text",
    "write_document",
]
