"""The XML Schema of the format (``jxl.xsd``): the reference every element is validated
against."""

from __future__ import annotations

import os
import threading
from typing import Optional

from lxml import etree

from .common import CHILD_TAGS
from .parsers import new_parser

#: The XML Schema of the format, shipped in the ``wmsync`` package (beside this one).
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jxl.xsd")
XSD = "{http://www.w3.org/2001/XMLSchema}"

_schemas = threading.local()
schema_lock = threading.Lock()


def element_schema() -> etree.XMLSchema:
    """``jxl.xsd`` plus a global declaration for each child of the root.

    With those, one child can be validated on its own (lxml validates an element as the
    root of a document). One per thread: a validator keeps its error log on itself.
    """
    schema: Optional[etree.XMLSchema] = getattr(_schemas, "element", None)
    if schema is None:
        # One thread at a time: a run's workers start reading at the same moment, and
        # libxml2's schema parser is not safe to run in several threads at once (seen as
        # a sporadic XMLSchemaParseError under load).
        with schema_lock:
            tree = etree.parse(SCHEMA_PATH, new_parser())
            root = tree.getroot()
            for tag in CHILD_TAGS:
                etree.SubElement(root, XSD + "element", name=tag, type=tag + "Element")
            schema = etree.XMLSchema(tree)
        _schemas.element = schema
    return schema
