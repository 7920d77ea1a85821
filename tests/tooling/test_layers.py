"""The tooling's layers: no import circle, and each concern imports only the ones below it.

Static, like tests/runtime/test_purity.py (which keeps the runtime free of the tooling):
every import statement under src/suture/tooling/, at any depth (an import inside a
function is still a dependency: lazy imports were how the old ``cli`` <-> ``cli_fleet``
circle was hidden), becomes an edge between two modules. Then:

* the graph of tooling modules has no cycle;
* between concerns (the packages ``build``, ``trust``, ``host``, ``prove``, ``fleet``,
  ``demo``, ``cli``), every edge is one that ``LAYERS`` allows (docs/architecture.md draws it);
* inside ``cli``, a command-group module imports only ``_common``, and no module but
  the package itself (which registers the groups) imports a command group.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# What each concern may import from the tooling (all may import suture.runtime).
LAYERS: Dict[str, Set[str]] = {
    "build": set(),
    "trust": set(),
    "host": set(),
    "prove": set(),
    "fleet": {"host", "trust"},
    "demo": {"build", "host", "trust"},
    "cli": {"build", "demo", "fleet", "host", "prove", "trust"},
}


def _module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(src: Path, package: str) -> Dict[str, Path]:
    """Dotted name -> file, for every module of ``package`` under ``src``."""
    root = src.joinpath(*package.split("."))
    return {_module_name(src, p): p for p in sorted(root.rglob("*.py"))}


def _graph(src: Path, package: str, source: Optional[Dict[str, str]] = None) -> Dict[str, Set[str]]:
    """Module -> the modules of ``package`` it imports (at any depth). ``from A import n``
    is an edge to ``A.n`` when that is a module, else to ``A``. ``source`` overrides the
    text of some modules (for testing this function)."""
    modules = _modules(src, package)
    if source:
        modules.update({name: src / "probe.py" for name in source})
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        text = source[name] if source and name in source else path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: List[str] = []
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[: len(here) - (node.level - 1)]
                                    + (node.module.split(".") if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
        graph[name] = {t for t in targets
                       if t in modules and t != name and (t == package or t.startswith(package + "."))}
    return graph


def _cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: Dict[str, int] = {}   # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _concern(module: str) -> Optional[str]:
    """``suture.tooling.fleet.feed`` -> ``fleet``; the tooling package itself -> None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else None


GRAPH = _graph(SRC, "suture.tooling")


def test_the_scanner_resolves_relative_submodule_and_nested_imports():
    # The checks below are only as good as _graph(): prove it sees what matters.
    probe = {"suture.tooling.cli.probe": (
        "from . import _common\nfrom ..fleet import feed\nfrom ...runtime import store\n"
        "def f():\n    from .host import apply\n    import suture.tooling.build.sources\n")}
    graph = _graph(SRC, "suture.tooling", probe)
    assert graph["suture.tooling.cli.probe"] == {
        "suture.tooling.cli._common", "suture.tooling.fleet.feed", "suture.tooling.cli.host",
        "suture.tooling.build.sources"}


def test_the_cycle_finder_finds_a_lazy_circle():
    # The shape of the old cli <-> cli_fleet circle: the back edge was a lazy import.
    probe = {"suture.tooling.cli.a": "from . import b\n",
             "suture.tooling.cli.b": "def f():\n    from . import a\n"}
    graph = _graph(SRC, "suture.tooling", probe)
    assert _cycle({k: graph[k] for k in probe}) == [
        "suture.tooling.cli.a", "suture.tooling.cli.b", "suture.tooling.cli.a"]


def test_the_tooling_has_its_concerns():
    assert {_concern(m) for m in GRAPH} == set(LAYERS) | {None}
    assert "suture.tooling.cli._common" in GRAPH


def test_no_import_circle_among_tooling_modules():
    assert _cycle(GRAPH) is None


@pytest.mark.parametrize("concern", sorted(LAYERS))
def test_each_concern_imports_only_the_layers_below_it(concern: str):
    wrong = sorted((m, t) for m, targets in GRAPH.items() if _concern(m) == concern
                   for t in targets
                   if _concern(t) not in (concern, None) and _concern(t) not in LAYERS[concern])
    assert wrong == []


def test_the_layers_table_itself_has_no_circle():
    assert _cycle(LAYERS) is None


def test_no_tooling_module_imports_the_tooling_package_root():
    # suture/tooling/__init__.py holds only a docstring; importing it for names would hide
    # an edge from the table above.
    assert sorted(m for m, targets in GRAPH.items() if "suture.tooling" in targets) == []


def test_cli_command_groups_import_only_the_shared_helpers():
    groups = [m for m in GRAPH if m.startswith("suture.tooling.cli.")
              and m not in ("suture.tooling.cli._common", "suture.tooling.cli.__main__")]
    assert groups, "no command-group module found"
    borrowed = sorted((m, t) for m in groups for t in GRAPH[m]
                      if t.startswith("suture.tooling.cli") and t != "suture.tooling.cli._common")
    assert borrowed == []
    assert sorted(t for t in GRAPH["suture.tooling.cli._common"]
                  if t.startswith("suture.tooling.cli")) == []
    # The package registers the groups; nothing imports it back but ``python -m``'s entry.
    importers = sorted(m for m, targets in GRAPH.items() if "suture.tooling.cli" in targets)
    assert importers == ["suture.tooling.cli.__main__"]
