"""Step 4: what happens after the first commit.

Enters: the applied ``_Record`` and its live ``_ModuleTxn``. Leaves: the ops of the
second commit (``_late``: module objects whose construction the patch changed, built
by the new code), the ops that build such objects again when only the state check
(step 5) can see that their construction changed (``_rebuild``), and notes on
references to replaced objects the patch could not reach (``_leftovers``).
Invariant: the late ops are committed as one C call like the first; if they fail the
caller undoes both commits.
"""

from __future__ import annotations

import ast
import gc
import re
import types
from types import FunctionType
from typing import Any, Dict, List, Set

from .._defs import syntax as _syntax
from .. import _codes
from .commit import Op
from ._refgraph import _importers
from ._scratch import _bind_module, _defaults, _exec_stmts, _import_source
from ._state import _IMMUTABLE, _ModuleTxn, _Record, _isa, _own_dict, live_module


def _late(rec: _Record, live: List[_ModuleTxn]) -> List[Any]:
    """Second phase: evaluate module objects whose construction the patch changed.

    They must be built by the *new* code, which only exists after the first
    commit. Between the two commits other threads may see new code next to the
    old object, exactly as they would through any reference the old object
    still has; the builder reports these as caveats.
    """
    ops: List[Any] = []
    for t in live:
        if not t.late_stmts:
            continue
        assert t.plan is not None and t.fixed_tree is not None
        module = live_module(t.name)
        assert module is not None
        before = len(t.ops)   # _exec_stmts adds the ops of attribute/item assignments
        ns = _exec_stmts(t, module, t.late_stmts)
        _bind_module(t, module, t.plan, ns, late=True)
        quals = _codes.live_qualnames(t.swapped)
        wanted = [q for q, fn in _syntax.iter_functions(t.fixed_tree.body)
                  if "<locals>" not in q
                  and _syntax._names_in([*fn.args.defaults, *fn.args.kw_defaults]) & set(ns)]
        _defaults(t, module, wanted, ns, quals)
        ops.extend(t.ops[before:])
    return ops


def _late_order(live: List[_ModuleTxn]) -> List[_ModuleTxn]:
    """``live`` with every module after the patched modules its late statements import
    from (depth first; a cycle keeps the given order)."""
    by_name = {t.name: t for t in live}
    out: List[_ModuleTxn] = []
    seen: Set[str] = set()

    def visit(t: _ModuleTxn) -> None:
        if t.name in seen:
            return
        seen.add(t.name)
        package = (_own_dict(live_module(t.name)) or {}).get("__package__") or ""
        for s in t.late_stmts:
            for node in ast.walk(s):
                if isinstance(node, ast.ImportFrom):
                    source = _import_source(node, str(package))
                    if source in by_name:
                        visit(by_name[source])
        out.append(t)

    for t in live:
        visit(t)
    return out


def _leftovers(txn: _ModuleTxn) -> List[str]:
    """Report references to replaced objects that the patch could not reach.

    Runs after the commit, so the module dicts the patch rebound no longer
    count. One ``gc.get_referrers`` heap walk per module, and only when the
    patch rebound objects that are not plain values (ints, strings, tuples...),
    compiled regexes (shared through ``re``'s cache by design), functions or
    classes (patched in place).
    """
    watched = [(label, o) for label, o in txn.watch
               if not _isa(o, _IMMUTABLE + (type, FunctionType, type(re.compile(""))))][:20]
    if not watched:
        return []
    targets = tuple(o for _, o in watched)   # passed as is: this tuple is ours too
    ours = {id(txn.watch), id(watched), id(targets)} | {id(p) for p in txn.watch} | {
        id(p) for p in watched}
    by_id = {id(o): label for label, o in watched}
    counts: Dict[str, List[str]] = {}
    for r in gc.get_referrers(*targets):
        if id(r) in ours or _isa(r, (Op, types.FrameType)):
            continue
        for target in gc.get_referents(r):
            label = by_id.get(id(target))
            if label is not None:
                counts.setdefault(label, []).append(type(r).__name__)
    return [f"{label}: {len(kinds)} reference(s) to the old object remain "
            f"({', '.join(sorted(set(kinds)))}); they keep seeing the old object"
            for label, kinds in sorted(counts.items())]


def _rebuild(t: _ModuleTxn, module: types.ModuleType, names: List[str]) -> List[Any]:
    """Evaluate again, with the fixed code now live, the top-level statements of the fixed
    source that bind ``names`` (``DEFAULT = Policy(3)``: objects a fresh import builds from
    what the patch changed), and bind what they make; the ops of a third commit.

    Only plain assignments (``NAME = expr``, ``NAME: T = expr``) at the top level of the
    module are evaluated; a name bound any other way is left to the caller (whose check
    then refuses). Modules that did ``from m import NAME`` get the new object too.
    """
    assert t.fixed_tree is not None
    wanted = set(names)
    stmts: List[ast.stmt] = []
    for node in t.fixed_tree.body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None
                   else [])
        bound = {x.id for x in targets if isinstance(x, ast.Name)}
        if bound & wanted and all(isinstance(x, ast.Name) for x in targets):
            stmts.append(node)
    if not stmts:
        return []
    before = len(t.ops)
    ns = _exec_stmts(t, module, stmts)
    d = module.__dict__
    old = {}
    for name in sorted(wanted & set(ns)):
        t.ops.append(Op("item", d, name, ns[name], f"{t.name}.{name} (built again)"))
        if name in d:
            old[name] = d[name]
            t.watch.append((f"{t.name}.{name}", d[name]))
    for alias_dict, alias, name in _importers(t.name, old):
        t.ops.append(Op("item", alias_dict, alias, ns[name], f"copy of {t.name}.{name}"))
    return t.ops[before:]


def _annotations(t: _ModuleTxn, module: types.ModuleType, qual: str) -> Any:
    """The ``__annotations__`` a fresh import of the fixed source gives the module (``qual``
    "") or its class ``qual``: each top-level annotated name of that body, its annotation
    evaluated in the live module (a string under ``from __future__ import annotations``).
    None when the body annotates anything inside a block (its annotations then depend on
    how the block ran) or the class is not found."""
    assert t.fixed_tree is not None
    body: List[ast.stmt] = t.fixed_tree.body
    for part in qual.split(".") if qual else []:
        node = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return None
        body = node.body
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names)
                    for n in t.fixed_tree.body)
    nested = [n for stmt in body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                           ast.ClassDef, ast.AnnAssign))
              for n in ast.walk(stmt) if isinstance(n, ast.AnnAssign)]
    if nested:
        return None
    out = {}
    for stmt in body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.simple:
            if postponed:
                out[stmt.target.id] = ast.unparse(stmt.annotation)
            else:
                expr = ast.Expression(body=stmt.annotation)
                ast.fix_missing_locations(expr)
                out[stmt.target.id] = eval(compile(expr, t.filename, "eval"), module.__dict__)
    return out
