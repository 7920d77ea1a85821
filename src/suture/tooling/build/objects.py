"""What a patch says about objects and frames that exist before it, for ``build`` and
``inspect``: the rows of its change list that the engine's ``_objects`` acts on, and the
migration stub an operator fills in where the builder cannot derive the state.

Enters: change rows (``{"module", "kind", "qualname", "verdict", "reason"}``), and the
source of a hook module. Leaves: rows as data, the stub as text.
Invariant: reads the change list only; nothing is imported or executed (the hooks'
migration tables are read with ``ast``).
"""

from __future__ import annotations

import ast
from typing import Any, Dict, List, Optional, Tuple

from ...runtime._defs.instances import cross_module_hazards

_KINDS = {
    "instance state, derived": ("apply", "derived"),
    "instance state, derived at revert": ("revert", "derived"),
    "instance state, needs migration": ("apply", "migration"),
    "instance state, needs migration at revert": ("revert", "migration"),
}


def rows(changes: List[Dict[str, Any]], meta: Optional[Dict[str, Any]] = None
         ) -> List[Dict[str, Any]]:
    """One row per instance-state delta and per old-caller hazard (within a module, from
    the change list; across modules, from ``meta["call_hazards"]``)."""
    out: List[Dict[str, Any]] = []
    for c in changes:
        kind = c.get("kind", "")
        if kind in _KINDS:
            direction, how = _KINDS[kind]
            cls, _, attr = str(c["qualname"]).rpartition(".")
            out.append({"module": c["module"], "class": cls, "attribute": attr,
                        "direction": direction, "how": how, "reason": c["reason"]})
        elif kind == "old caller, changed callee":
            caller, _, callee = str(c["qualname"]).partition("->")
            out.append({"module": c["module"], "caller": caller, "callee": callee,
                        "how": "frames", "reason": c["reason"]})
    for h in (meta or {}).get("call_hazards") or []:
        out.append({"module": h["module"], "caller": h["caller"], "callee": h["callee"],
                    "how": "frames", "reason": f"line {h['line']}: {h['why']}"})
    return out


def cross_module(entries: List[Any], paths: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Calls from changed functions of one module to changed functions of another module of
    the patch that the callee's new signature rejects (``instances.cross_module_hazards``).
    ``entries``: the builder's module entries; ``paths``: module -> its file (a package's
    ``__init__.py`` is its own package)."""
    trees = {}
    packages = {}
    changed = {}
    for e in entries:
        if e.status != "changed" or e.baseline is None or e.fixed is None:
            continue
        try:
            trees[e.name] = (ast.parse(e.baseline), ast.parse(e.fixed))
        except SyntaxError:
            continue
        changed[e.name] = {c.qualname for c in e.changes if c.kind in (
            "changed function", "changed method", "changed nested function",
            "changed default")}
        is_package = str(paths.get(e.name, "")).endswith("__init__.py")
        packages[e.name] = e.name if is_package else e.name.rpartition(".")[0]
    found = cross_module_hazards(trees, packages, changed)
    return [{"module": m, "caller": h.caller, "callee": h.callee, "line": h.line,
             "why": h.why} for m, hs in sorted(found.items()) for h in hs]


def migration_tables(hooks_source: Optional[str]) -> Dict[str, List[str]]:
    """The keys of MIGRATIONS and REVERT_MIGRATIONS in a hook module's source (literal
    dicts only; anything else is listed as "(not a literal dict)")."""
    out: Dict[str, List[str]] = {}
    if not hooks_source:
        return out
    try:
        tree = ast.parse(hooks_source)
    except SyntaxError:
        return out
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id in ("MIGRATIONS", "REVERT_MIGRATIONS"):
            value = stmt.value
            out[stmt.targets[0].id] = (
                [k.value for k in value.keys if isinstance(k, ast.Constant)
                 and isinstance(k.value, str)]
                if isinstance(value, ast.Dict) else ["(not a literal dict)"])
    return out


def needs_migration(object_rows: List[Dict[str, Any]],
                    tables: Dict[str, List[str]]) -> List[Dict[str, Any]]:
    """The rows that need a migration the hooks do not name."""
    return [r for r in object_rows if r.get("how") == "migration"
            and f"{r['module']}:{r['class']}" not in tables.get(
                "MIGRATIONS" if r["direction"] == "apply" else "REVERT_MIGRATIONS", [])]


def stub(missing: List[Dict[str, Any]]) -> str:
    """A hook module to review and fill in: one function per class and direction, as
    Erlang's code_change/3, that gives an object what the code put in place reads."""
    by_key: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for r in missing:
        by_key.setdefault((r["direction"], r["module"], r["class"]), []).append(r)
    lines = ['"""Migrations for objects that exist before this patch (review and fill in).',
             "",
             "Each function receives one live object and must set what the code put in",
             "place reads, with the value the OLD code meant for that object. The engine",
             "calls it on every live object of the class and its subclasses, before the",
             "commit; if it raises, every object is restored and nothing is applied.",
             "Pass this file to `suture build --hooks` and rebuild.",
             '"""', "", ""]
    tables: Dict[str, List[str]] = {"MIGRATIONS": [], "REVERT_MIGRATIONS": []}
    for (direction, module, cls), items in sorted(by_key.items()):
        fn = ("_forward_" if direction == "apply" else "_back_") \
            + "_".join([*module.split("."), *cls.split(".")])
        side = "fixed" if direction == "apply" else "restored (vulnerable)"
        lines.append(f"def {fn}(obj):")
        lines.append(f'    """{module}:{cls}: state the {side} code reads."""')
        for r in items:
            lines.append(f"    # {r['attribute']}: {r['reason']}")
            lines.append(f"    raise NotImplementedError("
                         f"{'set obj.' + r['attribute'] + ' to what the old code meant'!r})")
        lines += ["", ""]
        tables["MIGRATIONS" if direction == "apply" else "REVERT_MIGRATIONS"].append(
            f'    "{module}:{cls}": {fn},')
    for name, entries in tables.items():
        if entries:
            lines += [f"{name} = {{", *entries, "}", ""]
    return "\n".join(lines).rstrip() + "\n"
