"""Static checks that the code ArcGIS Pro runs honours the floors (docs/design.md §9).

Cheap guards for what ruff and mypy do not see: Python 3.9 grammar, names added after
3.9, urllib3 2-only options, lxml parsers made without the safety keywords, and no
import of werkzeug or the emulator on the toolbox / ``wmsync sync`` path. The emulator
(and the demo that starts it) are development tools and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.floor  # run again on ArcGIS Pro 3.0's library versions (.ci/run)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wmsync"
SHIPPED = [
    *sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if p.name != "demo.py" and "emulator" not in p.relative_to(PACKAGE).parts
    ),
    ROOT / "WorkflowSync.pyt",
]
IDS = [p.relative_to(PACKAGE).as_posix() if PACKAGE in p.parents else p.name for p in SHIPPED]

#: lxml calls that create a parser or parse with a default one.
PARSER_MAKERS = {"XMLParser", "iterparse", "XMLPullParser", "ETCompatXMLParser"}
DEFAULT_PARSER_USERS = {"parse", "fromstring", "XML", "fromstringlist", "XMLID"}
#: urllib3 2.x only (or removed in 2.x): Pro 3.0-3.2 ship urllib3 1.26.
URLLIB3_TRAPS = {
    "method_whitelist",
    "backoff_max",
    "backoff_jitter",
    "BACKOFF_MAX",
    "DEFAULT_METHOD_WHITELIST",
    "BaseHTTPResponse",
}
#: Newer than Python 3.9 (module, name).
PY310_NAMES = {
    ("datetime", "UTC"),
    ("itertools", "pairwise"),
    ("typing", "Self"),
    ("typing", "TypeAlias"),
    ("typing", "ParamSpec"),
    ("typing", "TypeGuard"),
    ("typing", "Concatenate"),
    ("typing", "LiteralString"),
    ("typing", "Never"),
    ("typing", "assert_never"),
    ("typing", "reveal_type"),
    ("typing", "Required"),
    ("typing", "NotRequired"),
    ("typing", "dataclass_transform"),
    ("enum", "StrEnum"),
    ("types", "NoneType"),
    ("types", "EllipsisType"),
    ("types", "UnionType"),
    ("contextlib", "aclosing"),
    ("contextlib", "chdir"),
    ("asyncio", "TaskGroup"),
    ("asyncio", "timeout"),
    ("hashlib", "file_digest"),
    ("operator", "call"),
}
PY310_MODULES = {"tomllib", "wsgiref.types"}
PY310_BUILTINS = {"aiter", "anext", "EncodingWarning", "ExceptionGroup", "BaseExceptionGroup"}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def name_of(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def keyword_constant(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return "<missing>"


def test_the_checked_files_are_the_shipped_ones():
    names = set(IDS)
    assert {
        "client.py",
        "exchange/__init__.py",
        "exchange/reader.py",
        "repository/quick.py",
        "exchange/parsers.py",
        "engine.py",
        "valuetable.py",
        "cli.py",
        "WorkflowSync.pyt",
    } <= names
    assert not [p for p in SHIPPED if "emulator" in p.parts]


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_python_39_grammar(path):
    ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_no_names_newer_than_python_39(path):
    module = tree(path)
    found = []
    has_future = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in module.body
    )
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [
                f"from {node.module} import {a.name}"
                for a in node.names
                if (node.module, a.name) in PY310_NAMES
            ]
            if node.module in PY310_MODULES:
                found.append(f"from {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name in PY310_MODULES]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in PY310_NAMES:
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in PY310_BUILTINS:
            found.append(node.id)
        elif isinstance(node, ast.Call):
            func = name_of(node.func)
            kws = {kw.arg for kw in node.keywords}
            if func == "zip" and "strict" in kws:
                found.append("zip(strict=)")
            if func == "dataclass" and kws & {"slots", "kw_only", "match_args"}:
                found.append("dataclass(slots/kw_only/match_args=)")
            if (
                func in ("isinstance", "issubclass")
                and len(node.args) == 2
                and any(
                    isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                    for n in ast.walk(node.args[1])
                )
            ):
                found.append(f"{func}(x, A | B)")
            if func in ("bisect", "bisect_left", "bisect_right", "insort") and "key" in kws:
                found.append(f"{func}(key=)")
        elif (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.AnnAssign))
            and not has_future
        ):
            annotations = (
                [node.annotation]
                if isinstance(node, ast.AnnAssign)
                else [a.annotation for a in (*node.args.args, *node.args.kwonlyargs)]
                + [node.returns]
            )
            for ann in annotations:
                if ann is not None and any(
                    isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(ann)
                ):
                    found.append(f"runtime X | Y annotation at line {ann.lineno}")
    assert found == []


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_no_urllib3_2_only_options(path):
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.keyword) and node.arg in URLLIB3_TRAPS:
            found.append(f"{node.arg}=")
        elif isinstance(node, ast.Attribute) and node.attr in URLLIB3_TRAPS:
            found.append(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and "urllib3" in node.module:
            found += [a.name for a in node.names if a.name in URLLIB3_TRAPS]
    assert found == []


#: The one module allowed to make an lxml parser, and what its options must say.
PARSER_FACTORY = PACKAGE / "exchange" / "parsers.py"
HARDENED = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "dtd_validation": False,
}


def factory_options(path):
    """The keywords of the ``options = dict(...)`` every parser of the factory takes."""
    for node in ast.walk(tree(path)):
        target = (
            node.targets[0]
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else node.target
            if isinstance(node, ast.AnnAssign)
            else None
        )
        if (
            target is not None
            and name_of(target) == "options"
            and isinstance(node.value, ast.Call)
            and name_of(node.value.func) == "dict"
        ):
            return {kw.arg: keyword_constant(node.value, kw.arg) for kw in node.value.keywords}
    return None


def unsafe_parser_calls(path, *, factory=False):
    """Only the factory (exchange/parsers.py) makes a parser or calls iterparse, each
    time with its one set of hardened options (``**options``; see factory_options):
    lxml 4.x and iterparse before 6.1 resolve entities by default. Every parse call
    names its parser (the default one is lxml's default)."""
    found = []
    for node in ast.walk(tree(path)):
        if not isinstance(node, ast.Call):
            continue
        func = name_of(node.func)
        if func in PARSER_MAKERS:
            if not factory:
                found.append(f"line {node.lineno}: {func}() outside the parser factory")
            elif not any(kw.arg is None and name_of(kw.value) == "options" for kw in node.keywords):
                found.append(f"line {node.lineno}: {func}() without **options")
        elif (
            func in DEFAULT_PARSER_USERS
            and isinstance(node.func, ast.Attribute)
            and name_of(node.func.value) in ("etree", "objectify", "html")
        ):
            if len(node.args) < 2 and "parser" not in {kw.arg for kw in node.keywords}:
                found.append(f"line {node.lineno}: {func}() with lxml's default parser")
    return found


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_lxml_parsers_are_made_only_by_the_hardened_factory(path):
    assert unsafe_parser_calls(path, factory=path == PARSER_FACTORY) == []


def test_the_factory_options_are_hardened():
    options = factory_options(PARSER_FACTORY)
    assert options is not None
    assert {name: options.get(name, "<missing>") for name in HARDENED} == HARDENED
    makers = [
        n
        for n in ast.walk(tree(PARSER_FACTORY))
        if isinstance(n, ast.Call) and name_of(n.func) in PARSER_MAKERS
    ]
    assert {name_of(n.func) for n in makers} == {"XMLParser", "iterparse"}


def test_the_parser_check_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from lxml import etree\n"
        "etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)\n"
        "etree.iterparse(f, **options)\n"
        "etree.fromstring(data)\n"
        "options = dict(resolve_entities='internal', no_network=True, load_dtd=False)\n"
    )
    assert unsafe_parser_calls(bad) == [
        "line 2: XMLParser() outside the parser factory",
        "line 3: iterparse() outside the parser factory",
        "line 4: fromstring() with lxml's default parser",
    ]
    assert unsafe_parser_calls(bad, factory=True) == [
        "line 2: XMLParser() without **options",
        "line 4: fromstring() with lxml's default parser",
    ]
    assert factory_options(bad)["resolve_entities"] == "internal"


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_no_werkzeug_or_emulator_at_import_time(path):
    """Module-level imports only: cli.py imports the emulator inside ``serve``."""
    found = []
    for node in tree(path).body:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "werkzeug"]
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            if (
                module.split(".")[0] == "werkzeug"
                or "emulator" in module
                or any(a.name in ("emulator", "demo") for a in node.names)
                or module.lstrip(".") == "demo"
            ):
                found.append(module)
    assert found == []
