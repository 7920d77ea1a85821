"""docs/security.md's table of promises names real tests (issue 13).

A table of "promise -> test" decays like any document: a renamed or deleted test would
leave a promise that nothing checks. This reads the table and requires every test it
names to exist, so the next rename fails here instead of silently.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
SECTION = "## Promises and their tests"


def _rows() -> Iterator[Tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("promise", "---") and cells[1]:
            yield cells[0], cells[1]


def _functions(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _find(short: str) -> Path:
    """A file named by its path from the root, or by its base name if that is unique."""
    if "/" in short:
        return ROOT / short
    found = sorted((ROOT / "tests").rglob(short))
    assert len(found) == 1, f"{short!r} names {len(found)} files; write its path"
    return found[0]


def _references(cell: str) -> List[Tuple[Path, str]]:
    cell = re.sub(r"\([^)]*\)", "", cell)           # notes in parentheses
    refs: List[Tuple[Path, str]] = []
    current = None
    for item in re.split(r"[,;]\s*", cell):
        item = item.strip().strip("`")
        if not item:
            continue
        file_part, sep, name = item.partition("::")
        if file_part:
            current = _find(file_part)
        assert current is not None, f"{item!r} names no file"
        refs.append((current, name if sep else ""))
    return refs


def test_every_test_the_promise_table_names_exists():
    rows = list(_rows())
    assert len(rows) > 30, "the table of promises was not found or lost its rows"
    cache: Dict[Path, Set[str]] = {}
    missing = []
    for promise, cell in rows:
        for path, name in _references(cell):
            if not path.is_file():
                missing.append(f"{promise}: no file {path.relative_to(ROOT)}")
            elif name and name not in cache.setdefault(path, _functions(path)):
                missing.append(f"{promise}: no test {name} in {path.relative_to(ROOT)}")
    assert not missing, "\n".join(missing)


def test_every_test_in_tests_security_is_named_by_the_table():
    named = {(p, n) for _, cell in _rows() for p, n in _references(cell)}
    files = {p for p, _ in named}
    unnamed = []
    for path in sorted((ROOT / "tests" / "security").glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for name in sorted(_functions(path)):
            if name.startswith("test_") and (path, name) not in named and path not in {
                    p for p, n in named if n == ""}:
                unnamed.append(f"{path.name}::{name}")
    assert files and not unnamed, ("tests in tests/security that no promise names: "
                                   + ", ".join(unnamed))
