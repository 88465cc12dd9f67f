"""Fast checks: the schema compiled into per-kind attribute checks (see below)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, NamedTuple, Optional

from lxml import etree

from .common import NOTE, ROOT
from .parsers import new_parser
from .schema import SCHEMA_PATH, XSD, schema_lock

# Validating each element with the XMLSchema costs about 20 µs; most of a large import
# went there. So each child of the root is first checked against a *compiled* form of the
# same schema: per kind, the allowed attributes with a check per simple type, the
# required ones and whether a <Note> child may appear, all generated from jxl.xsd when
# first needed. The compiled checks are conservative: whatever they accept, the schema
# accepts (tests/test_exchange_perf.py proves it on a corpus); whatever they do not
# understand or refuse goes to the XMLSchema, which stays the reference and gives the
# error message. So the XSD decides every refusal, with the same text as before.

_XML_WS = frozenset(" \t\r\n")
_LONG_RANGE = (-(2**63), 2**63 - 1)
# Pattern text the compiler translates to Python's re: literals, classes, groups,
# quantifiers, and "\-" or "\." escapes. Anything else (\d, \p{..}, ^, $ ...) means
# "let the XMLSchema decide" for that type.
_SAFE_PATTERN = re.compile(r"(?:[A-Za-z0-9_.~%:,\[\]{}()?*+| -]|\\[-.])*")


class _Rule(NamedTuple):
    """The compiled check of one simple type: *match* (an anchored regex's ``match``)
    must match; *low*/*high* bound the integer value when set."""

    match: Callable[[str], Optional[re.Match[str]]]
    low: Optional[int] = None
    high: Optional[int] = None
    digits: bool = False  # every 1 to 18 ASCII digits match (an xs:long of digits)


_NEVER = _Rule(re.compile(r"(?!)").match)  # matches nothing: the schema decides
# Patterns that match every string of ASCII digits (a rule of only these, on xs:long,
# has ``digits``: the writer's shortcut for the most common values).
_DIGIT_PATTERNS = frozenset(("-?[0-9]+", "[0-9]+"))


@dataclass(frozen=True)
class Shape:
    """What one kind of element may carry, compiled from the schema.

    ``attrs`` maps each allowed attribute to its rule (``None``: any text); ``note``
    says whether one text-only ``<Note>`` child may appear.
    """

    attrs: Dict[str, Optional[_Rule]]
    required: FrozenSet[str]
    note: bool


def _compile_simple(node: etree._Element) -> Optional[_Rule]:
    """The rule of one ``xs:simpleType`` (a restriction of xs:string or xs:long)."""
    restrictions = node.findall(XSD + "restriction")
    if len(restrictions) != 1 or len(node) != 1:
        return _NEVER
    restriction = restrictions[0]
    base = restriction.get("base")
    patterns: List[str] = []
    min_length: Optional[int] = None
    low: Optional[int] = None
    values: List[str] = []
    for facet in restriction:
        if not isinstance(facet.tag, str):
            continue  # a comment
        name = facet.tag[len(XSD) :] if facet.tag.startswith(XSD) else ""
        value = str(facet.get("value", ""))
        if name == "pattern" and _SAFE_PATTERN.fullmatch(value):
            patterns.append(value)
        elif name == "minLength" and base == "xs:string":
            min_length = int(value)
        elif name == "minInclusive" and base == "xs:long":
            low = int(value)
        elif name == "enumeration" and base == "xs:string":
            values.append(re.escape(value))
        else:
            return _NEVER  # a facet the compiler does not know: the schema decides
    # Every facet becomes a lookahead of one anchored regex (several patterns in one
    # restriction would be alternatives in XSD; requiring all of them is stricter, so
    # still safe).
    parts = [rf"(?=(?:{p})\Z)" for p in patterns]
    if base == "xs:long":
        # Up to 18 digits always fit a long; longer numbers (and white space, which
        # xs:long would collapse) are left to the schema.
        parts.append(r"(?=[+-]?[0-9]{1,18}\Z)")
        digits = all(p in _DIGIT_PATTERNS for p in patterns)
        return _Rule(re.compile("".join(parts)).match, low, None, digits)
    if base != "xs:string":
        return _NEVER
    if min_length is not None:
        parts.append(rf"(?=.{{{min_length},}}\Z)")
    if values:
        parts.append(rf"(?=(?:{'|'.join(values)})\Z)")
    if not parts:
        return None  # any text
    return _Rule(re.compile("".join(parts), re.DOTALL).match)


def _compile_shapes(path: str = SCHEMA_PATH) -> Dict[str, Shape]:
    """Compile the schema's root children into :class:`Shape` s (see above)."""
    root = etree.parse(path, new_parser()).getroot()
    simple: Dict[str, Optional[_Rule]] = {"xs:string": None}
    for node in root.iterfind(XSD + "simpleType"):
        simple[str(node.get("name"))] = _compile_simple(node)
    groups = {str(g.get("name")): g for g in root.iterfind(XSD + "attributeGroup")}

    def attributes(
        holder: etree._Element, attrs: Dict[str, Optional[_Rule]], required: List[str]
    ) -> bool:
        for item in holder:
            if not isinstance(item.tag, str):
                continue
            if item.tag == XSD + "attribute":
                name, type_name = str(item.get("name")), str(item.get("type"))
                attrs[name] = simple.get(type_name, _NEVER)
                if item.get("use") == "required":
                    required.append(name)
            elif item.tag == XSD + "attributeGroup" and item.get("ref") in groups:
                if not attributes(groups[str(item.get("ref"))], attrs, required):
                    return False
            elif item.tag != XSD + "sequence":
                return False
        return True

    shapes: Dict[str, Shape] = {}
    declared = root.find(f"{XSD}element[@name='{ROOT}']/{XSD}complexType/{XSD}choice")
    for element in [] if declared is None else declared.iterfind(XSD + "element"):
        tag, type_name = str(element.get("name")), str(element.get("type"))
        complex_type = root.find(f"{XSD}complexType[@name='{type_name}']")
        if complex_type is None or complex_type.get("mixed") not in (None, "false"):
            continue
        attrs: Dict[str, Optional[_Rule]] = {}
        required: List[str] = []
        if not attributes(complex_type, attrs, required):
            continue
        sequence = complex_type.findall(XSD + "sequence")
        note = False
        if sequence:
            items = [i for i in sequence[0] if isinstance(i.tag, str)]
            if (
                len(sequence) != 1
                or len(items) != 1
                or items[0].get("name") != NOTE
                or items[0].get("type") != "xs:string"
                or items[0].get("minOccurs") != "0"
                or items[0].get("maxOccurs") not in (None, "1")
            ):
                continue
            note = True
        shapes[tag] = Shape(attrs, frozenset(required), note)
    return shapes


_shapes: Optional[Dict[str, Shape]] = None


def fast_shapes() -> Dict[str, Shape]:
    global _shapes
    if _shapes is None:
        with schema_lock:
            if _shapes is None:
                _shapes = _compile_shapes()
    return _shapes


def fast_valid(node: etree._Element, attrs: Dict[str, str], shape: Shape) -> bool:
    """True only when the schema would accept *node* (whose attributes are *attrs*)."""
    if node.text is not None:
        return False
    rules = shape.attrs
    for name, value in attrs.items():
        rule = rules.get(name, _NEVER)
        if rule is None:
            continue
        if rule.match(value) is None:
            return False
        if rule.low is not None and int(value) < rule.low:
            return False
    if not shape.required.issubset(attrs):
        return False
    count = len(node)
    if count == 0:
        return True
    if count != 1 or not shape.note:
        return False
    child = node[0]
    return child.tag == NOTE and len(child) == 0 and not child.attrib and child.tail is None


def attribute_rules(tag: str) -> Dict[str, Optional[_Rule]]:
    """The compiled rule of each attribute *tag* may carry (``None``: any text); an
    attribute not listed, or a tag without a shape, is for the schema to decide."""
    shape = fast_shapes().get(tag)
    return {} if shape is None else shape.attrs


def surely_valid(rule: Optional[_Rule], value: str) -> bool:
    """True only when the schema would accept *value* for an attribute of *rule*."""
    if rule is None:
        return True
    if not (rule.digits and value.isdigit() and value.isascii() and len(value) <= 18):
        if rule.match(value) is None:
            return False
    return rule.low is None or int(value) >= rule.low
