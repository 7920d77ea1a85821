"""suture.runtime loads into other people's processes: stdlib only, and importing it does nothing.

Static half: every import statement under src/suture/runtime/ (at any depth,
including imports inside functions) names a stdlib module or the runtime
itself, and never suture.tooling. Dynamic half, in a fresh interpreter:
importing suture.runtime starts no thread, leaves sys.meta_path, sys.path_hooks,
trace/profile functions and the excepthook alone, and loads no third-party
module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "suture" / "runtime"
FILES = sorted(RUNTIME.rglob("*.py"))


def _imports(path: Path, source: Optional[str] = None) -> List[Tuple[int, str]]:
    """(line, absolute dotted name) of everything ``path`` imports, at any depth."""
    if source is None:
        source = path.read_text(encoding="utf-8")
    package = ["suture", "runtime"] + list(path.relative_to(RUNTIME).parent.parts)
    out = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                out.append((node.lineno, ".".join(base + node.module.split("."))))
            else:  # from . import x: x may be a module
                out += [(node.lineno, ".".join(base + [alias.name])) for alias in node.names]
    return sorted(out)


def _outside_runtime(name: str) -> bool:
    """A suture module other than the runtime (and the bare package, which holds only metadata)."""
    return name.split(".")[0] == "suture" and name not in ("suture", "suture.runtime") \
        and not name.startswith("suture.runtime.")


def test_the_runtime_has_modules_to_check():
    assert {p.name for p in FILES} >= {"__init__.py", "check.py", "prepare.py", "commit.py", "post.py", "_hook.py"}


def test_the_import_scanner_resolves_relative_and_nested_imports():
    # The checks below are only as good as _imports(): prove it sees what matters.
    source = ("from .. import tooling\nfrom ..tooling import build\nfrom . import _engine\n"
              "def f():\n    import click\n    from ._defs import x\n")
    names = [n for _, n in _imports(RUNTIME / "_probe.py", source)]
    assert names == ["suture.tooling", "suture.tooling", "suture.runtime._engine",
                     "click", "suture.runtime._defs"]
    assert [n for n in names if _outside_runtime(n)] == ["suture.tooling", "suture.tooling"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_runtime_never_imports_tooling(path: Path):
    assert [(line, name) for line, name in _imports(path) if _outside_runtime(name)] == []


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_runtime_imports_only_the_standard_library(path: Path):
    allowed = set(sys.stdlib_module_names) | {"__future__", "suture"}
    assert [(line, name) for line, name in _imports(path)
            if name.split(".")[0] not in allowed] == []


IMPORT_PROBE = r"""
import json
import os
import sys
import threading


def tasks():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def snapshot():
    return {"threads": [t.name for t in threading.enumerate()], "os_threads": tasks(),
            "meta_path": [repr(f) for f in sys.meta_path],
            "meta_path_ids": [id(f) for f in sys.meta_path],
            "path_hooks": [id(h) for h in sys.path_hooks], "path": list(sys.path),
            "trace": repr(sys.gettrace()), "profile": repr(sys.getprofile()),
            "excepthook": repr(sys.excepthook), "switch": sys.getswitchinterval()}


before = snapshot()
modules_before = set(sys.modules)
import suture.runtime
import suture.runtime.errors
import suture.runtime.patchfile
import suture.runtime.engine  # loaded on first use (issue 19): importing it starts nothing either
after = snapshot()
new = sorted(set(sys.modules) - modules_before)
std = sorted(getattr(sys, "stdlib_module_names", ()))
sys.stdout.write("\n" + json.dumps({"before": before, "after": after, "new": new, "std": std})
                 + "\n")
"""


@pytest.mark.slow
def test_importing_the_runtime_starts_nothing_and_hooks_nothing(tmp_path: Path):
    # -I: no user site, no PYTHON* variables; only src/ is added to the path.
    script = tmp_path / "probe.py"
    script.write_text(IMPORT_PROBE, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-I", "-B", "-c",
                           f"import sys; sys.path.insert(0, {str(RUNTIME.parents[1])!r}); "
                           f"exec(open({str(script)!r}).read())"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["after"] == got["before"]
    assert got["before"]["threads"] == ["MainThread"]
    new = got["new"]
    assert [m for m in new if m.startswith("suture.tooling")] == []
    assert "suture.runtime" in new and "suture.runtime.engine" in new
    if got["std"]:
        std = set(got["std"]) | {"__future__"}
        assert [m for m in new if m.split(".")[0] not in std | {"suture"}] == []
