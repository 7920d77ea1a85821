"""The runtime's modules import no circle, and the engine's layers import downward only.

The graph is built from the source with ``ast``: every import statement under
src/suture/runtime/ at any depth, so an import inside a function (the usual way to
hide a circle) counts like one at the top. ``from . import x`` is an edge to the
module ``x`` when there is such a file, else to the package itself. A package's
``__init__`` is not an implicit dependency of its submodules here: Python imports it
first, but it is the package's entry point, not a helper its submodules may call
back into (the edges that matter are the explicit ones). No exception is granted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "suture" / "runtime"


def _name(path: Path) -> str:
    parts = ["suture", "runtime"] + list(path.relative_to(RUNTIME).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Dict[str, Path] = {_name(p): p for p in sorted(RUNTIME.rglob("*.py"))}


def _edges(path: Path, source: Optional[str] = None) -> Set[str]:
    """The runtime modules ``path`` imports, at any depth."""
    if source is None:
        source = path.read_text(encoding="utf-8")
    me = _name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            mod = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if sub in MODULES else mod)
    return {m for m in out if m in MODULES and m != me}


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a path (first node repeated at the end), or []."""
    state: Dict[str, int] = {}   # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


GRAPH = {name: _edges(path) for name, path in MODULES.items()}


def test_the_graph_sees_function_level_and_relative_imports():
    # The check below is only as good as _edges(): prove it sees what hides a circle.
    probe = RUNTIME / "engine" / "_probe.py"
    source = ("from . import commit as _commit\nfrom ._state import Result\n"
              "from .. import _hook, errors\nfrom ..errors import SutureError\n"
              "def f():\n    from . import prepare\n    import suture.runtime.engine.post\n")
    assert _edges(probe, source) == {
        "suture.runtime.engine.commit", "suture.runtime.engine._state", "suture.runtime._hook",
        "suture.runtime.errors", "suture.runtime.engine.prepare", "suture.runtime.engine.post"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_runtime_imports_no_circle():
    assert {"suture.runtime.engine", "suture.runtime.engine.check", "suture.runtime._hook"} \
        <= GRAPH.keys()
    assert _cycle(GRAPH) == []


def test_importing_the_runtime_loads_neither_the_engine_nor_the_patch_reader():
    # The agent idles in every process and the CLI imports error classes from here: the
    # engine and the patch reader load on first use (issue 19).
    code = ("import sys, suture.runtime as r; print(sorted(m for m in sys.modules "
            "if m.startswith('suture.'))); r.Result; r.load_patch; r.unit; "
            "print('suture.runtime.engine' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["['suture.runtime', 'suture.runtime.errors']", "True"], out


def test_the_import_hook_does_not_import_the_engine():
    # It receives the engine's entry point with every refresh() (issue 14).
    assert not {m for m in GRAPH["suture.runtime._hook"] if m.startswith("suture.runtime.engine")}


# The engine's layers, lowest first. A module may import only modules of its own or a
# lower layer; within the steps, a step never imports a later step of an apply.
LAYERS = [
    {"_state", "commit"},
    {"_refgraph", "_activeness", "_oldcalls"},
    {"_scratch", "_patchhooks", "_annotations"},
    {"_objects"},
    {"check", "prepare", "post", "verify", "reverting", "reporting"},
    {""},   # the package: apply, revert, status, the lock
]
STEPS = ["check", "prepare", "commit", "post", "verify"]


def _engine_part(module: str) -> Optional[str]:
    prefix = "suture.runtime.engine"
    if module == prefix:
        return ""
    return module[len(prefix) + 1:] if module.startswith(prefix + ".") else None


def test_every_engine_module_has_a_layer():
    parts = {_engine_part(m) for m in MODULES} - {None}
    assert parts == set().union(*LAYERS)


def test_engine_imports_run_downward_and_steps_forward():
    level = {part: i for i, layer in enumerate(LAYERS) for part in layer}
    wrong = []
    for module, deps in GRAPH.items():
        me = _engine_part(module)
        if me is None:
            continue
        for dep in deps:
            other = _engine_part(dep)
            if other is None:
                continue
            if level[other] > level[me]:
                wrong.append(f"{module} imports the higher {dep}")
            elif level[other] == level[me] and other in STEPS and me in STEPS \
                    and STEPS.index(other) > STEPS.index(me):
                wrong.append(f"step {module} imports the later step {dep}")
            elif level[other] == level[me] and other != me and me not in STEPS:
                wrong.append(f"{module} imports {dep} of its own layer")
    assert wrong == []


def test_the_definition_diff_imports_its_facts_and_rules_not_the_reverse():
    # _defs: syntax (facts) <- verdicts (rules) <- instances (what exists before a patch)
    # <- diff (the walk) <- the package's exports.
    order = ["syntax", "verdicts", "instances", "diff", ""]
    wrong = []
    for module, deps in GRAPH.items():
        if not (module + ".").startswith("suture.runtime._defs."):
            continue
        me = module[len("suture.runtime._defs") + 1:]
        for dep in deps:
            if not (dep + ".").startswith("suture.runtime._defs."):
                if dep.startswith("suture.runtime"):
                    wrong.append(f"{module} imports {dep}: the diff stands alone")
                continue
            other = dep[len("suture.runtime._defs") + 1:]
            if order.index(other) >= order.index(me):
                wrong.append(f"{module} imports {dep}")
    assert {m for m in GRAPH if m.startswith("suture.runtime._defs")} == {
        "suture.runtime._defs", "suture.runtime._defs.syntax", "suture.runtime._defs.verdicts",
        "suture.runtime._defs.instances", "suture.runtime._defs.diff"}
    assert wrong == []
