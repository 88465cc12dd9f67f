"""The one place the project makes an lxml parser: :func:`new_parser`.

lxml 4.x resolves external entities unless told not to (and ``iterparse`` does until
6.1), so every parser is made here, with entity resolution, DTD loading, network access
and huge-tree mode off, the options written once. (A document with a DOCTYPE never even
reaches a parser: :mod:`.source` refuses it first.) ``huge_tree`` stays off: text up to
:data:`wmsync.model.MAX_TEXT_CHARS` per field, escaped, stays well inside libxml2's
default limits (10,000,000 bytes per text node or attribute value).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Sequence, Tuple, Union, overload

from lxml import etree

Events = Iterator[Tuple[str, etree._Element]]


@overload
def new_parser(*, target: Any = None) -> etree.XMLParser: ...
@overload
def new_parser(*, stream: Any, events: Sequence[str]) -> Events: ...


def new_parser(
    *, target: Any = None, stream: Any = None, events: Sequence[str] = ()
) -> Union[etree.XMLParser, Events]:
    """A hardened parser: with *stream*, ``iterparse`` over it (the reference reader's
    events, comments and processing instructions dropped); otherwise an ``XMLParser``
    (with *target*, a parser target's; without, a tree parser's). Input is read as
    UTF-8 whatever it declares (:mod:`.source` refused other declarations)."""
    options: Dict[str, Any] = dict(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        encoding="UTF-8",
    )
    if stream is not None:
        iterator: Events = etree.iterparse(
            stream,
            events=tuple(events),
            recover=False,
            remove_comments=True,
            remove_pis=True,
            **options,
        )
        return iterator
    return etree.XMLParser(target=target, **options)
