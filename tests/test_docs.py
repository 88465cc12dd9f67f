"""The docs stay true to the tree (docs/design.md §12): the project cites only its own
documents, the module paths docs/design.md and docs/internals.md name exist, and every
``docs/design.md §N`` cited in code names a section of docs/design.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
INTERNALS = ROOT / "docs" / "internals.md"

#: Files outside the repository, which a clone does not have: never cited. (The first is
#: spelled in two parts so that this file does not cite it either.)
FOREIGN = ("../" + "shared", "DESIGN.md", "wmserver-protocol.md", "pyt-toolbox.md", "STYLE.md")

#: ``wmsync/...py`` files and ``wmsync/<package>/`` folders, as the docs write them.
MODULE_PATH = re.compile(r"wmsync/(?:[A-Za-z_][\w/]*\.py|[A-Za-z_]\w*/)")
CITATION = re.compile(r"docs/design\.md\s+§(\d+)")
SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def _tracked_files() -> List[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in done.stdout.splitlines() if (ROOT / name).is_file()]


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8", errors="replace")


def test_nothing_outside_docs_cites_a_file_outside_the_repository() -> None:
    offenders = []
    for name in _tracked_files():
        if name.startswith(("docs/", ".ci/")) or name == "tests/test_docs.py":
            continue
        text = _text(name)
        offenders += [f"{name}: {cited}" for cited in FOREIGN if cited in text]
    assert offenders == []


@pytest.mark.parametrize("doc", [DESIGN, INTERNALS], ids=["design.md", "internals.md"])
def test_every_module_path_the_docs_name_exists(doc: Path) -> None:
    named = set(MODULE_PATH.findall(doc.read_text(encoding="utf-8")))
    assert named, f"{doc.name} names no wmsync path: the pattern is wrong"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == [], f"{doc.name} names paths that do not exist"


def test_every_cited_design_section_exists() -> None:
    sections = set(SECTION.findall(DESIGN.read_text(encoding="utf-8")))
    assert sections, "docs/design.md has no numbered sections: the pattern is wrong"
    cited = set()
    wrong = []
    for name in _tracked_files():
        if name.startswith("docs/") or not name.endswith((".py", ".pyt", ".toml", ".md")):
            continue
        for number in CITATION.findall(_text(name)):
            cited.add(number)
            if number not in sections:
                wrong.append(f"{name}: §{number}")
    assert cited, "no code cites docs/design.md §N: the pattern is wrong"
    assert wrong == []
