"""Annotations a fix changes: carried to the live function objects with the code swap.

A function's annotations are not in its code object: before 3.14 they are a dict made
when the ``def`` runs (strings under ``from __future__ import annotations``); on 3.14+
(PEP 649) the ``def`` makes an ``__annotate__`` function, compiled into the *enclosing*
code, that builds the dict when it is first asked for. So swapping ``__code__`` leaves the
old annotations in place, and a framework that converts or validates arguments by them
(pydantic, FastAPI, typer; ``typing.get_type_hints``) keeps the vulnerable behaviour.

What a fresh import of the fixed release has is made here the same way CPython makes it:
the fixed ``def`` is compiled again with its body and defaults stubbed out (so nothing of
the application runs but the annotation expressions themselves) and executed in a scratch
namespace whose reads fall through to the live module, or to the live class and then the
module for a method, as a class body's would:

* eager (before 3.14, or the module has ``from __future__ import annotations``): the new
  values are written into the function's own ``__annotations__`` dict, key by key, as
  ``item`` ops. In place, because ``functools.update_wrapper`` (``wraps``, ``lru_cache``)
  gave the wrappers that same dict object: they all see the fix, and revert puts every
  old value back.
* lazy (3.14+): a new ``__annotate__`` function (the stub's, with the live module as
  globals; a method's ``__classdict__`` cell holds the live class's namespace, with what
  this patch sets on it) replaces the old one on the function and on every wrapper that
  ``update_wrapper`` gave the old one (found with one ``gc.get_referrers``). Setting
  ``__annotate__`` clears the function's cached ``__annotations__``, so the next read
  evaluates the fixed annotations, lazily, as in a fresh process; revert puts the old
  ``__annotate__`` back, which clears the cache again.

Not carried: the annotations of a closure made before the patch (``<locals>``; new
closures get the new ones, as for defaults), and what a decorator *derived* from the
annotations when the function was defined: the builder's verdict covers that
(``_defs.diff``: an annotation change under a decorator that may read them needs a hook).
A function with PEP 695 type parameters whose annotations change is refused (SUT-E203):
its annotations read type variables that only the ``def``'s own generic scope makes.
"""

from __future__ import annotations

import __future__
import ast
import collections
import copy
import gc
import sys
import types
from types import FunctionType
from typing import Any, Dict, List, Optional

from .._defs import syntax as _syntax
from .. import _defs
from .commit import MISSING, Op
from ..errors import RestartRequired
from ._refgraph import _resolve_class
from ._state import _ModuleTxn, _evaluation_refused

LAZY = sys.version_info >= (3, 14)   # PEP 649: __annotate__


def changed(plan: _defs.ModulePlan) -> Dict[str, _syntax.FuncNode]:
    """Qualified name -> fixed def, for the functions whose annotations the fix changes."""
    if plan.old_tree is None or plan.new_tree is None:
        return {}
    old = dict(_syntax.iter_functions(plan.old_tree.body))
    return {q: node for q, node in _syntax.iter_functions(plan.new_tree.body)
            if q in old and "<locals>" not in q
            and _syntax.annotations_dump(node) != _syntax.annotations_dump(old[q])}


def carry(txn: _ModuleTxn, module: types.ModuleType, plan: _defs.ModulePlan,
          ns: Dict[str, Any], quals: Dict[int, str]) -> None:
    """Ops that give every swapped function whose annotations change the fixed ones."""
    wanted = changed(plan)
    if not wanted:
        return
    assert plan.new_tree is not None
    future = any(_syntax.stmt_category(s) == "future"
                 and any(n.name == "annotations" for n in s.names)  # type: ignore[attr-defined]
                 for s in plan.new_tree.body)
    for f in txn.swapped:
        q = quals.get(id(f.__code__))
        node = wanted.get(q) if q is not None else None
        if node is None:
            continue
        assert q is not None
        owner = _resolve_class(module, q.rsplit(".", 1)[0]) if "." in q else None
        if getattr(node, "type_params", None) or getattr(owner, "__type_params__", None):
            raise RestartRequired(
                f"Patch {txn.name}:{q} changes the annotations of a generic function (PEP 695 "
                "type parameters): they read type variables that only the def's own scope "
                "makes, which a live function cannot be given. Nothing was changed; restart "
                "the process.", details={"module": txn.name, "function": q})
        pending = {op.key: op.new for op in txn.ops if owner is not None
                   and op.kind == "attr" and op.obj is owner and op.new is not MISSING}
        lazy = LAZY and not future
        stub = _stub(module, q, node, owner, pending, ns, txn.filename, future, lazy)
        target = txn.forwarded.get(id(f))
        label = f"{txn.name}:{q} annotations"
        if lazy:
            new = _annotate_of(stub, module, owner, pending, f)
            if target is not None:   # not live yet: the old object forwards to it
                target.__annotate__ = new   # type: ignore[attr-defined]
                continue
            old = getattr(f, "__annotate__", None)
            if old is None:
                # No __annotate__ before (no annotations): revert will set None back, which
                # keeps the cache the fixed annotations filled. This op, undone after it,
                # puts the old (empty) __annotations__ back.
                txn.ops.append(Op("attr", f, "__annotations__", {}, label))
            txn.ops.append(Op("attr", f, "__annotate__", new, label))
            holders = _holders(old, f)
            txn.ops.extend(Op(kind, holder, key, new, f"{label} (wrapper)")
                           for kind, holder, key in holders)
            if new is None:
                # Setting __annotate__ to None keeps a cached __annotations__: empty it
                # too, after. Undone in reverse order, the old dict comes back first
                # (which sets __annotate__ to None) and then the old __annotate__ (which
                # clears that cache again), as the function had them.
                txn.ops.extend(Op("attr", g, "__annotations__", {}, label)
                               for g in [f] + [h for k, h, _ in holders if k == "attr"])
            continue
        values = dict(stub.__annotations__)
        if target is not None:
            target.__annotations__ = values
            continue
        live = f.__annotations__   # the dict update_wrapper copies share
        txn.ops.extend(Op("item", live, k, MISSING, label) for k in live if k not in values)
        txn.ops.extend(Op("item", live, k, v, label) for k, v in values.items()
                       if live.get(k, MISSING) is not v)


def _stub(module: types.ModuleType, q: str, node: _syntax.FuncNode, owner: Optional[type],
          pending: Dict[str, Any], ns: Dict[str, Any], filename: str,
          future: bool, lazy: bool) -> FunctionType:
    """The fixed def with ``pass`` for body and ``None`` for defaults, executed as its module
    or class body would: eager annotations are evaluated by the def, in a scope that reads
    the class's namespace, then the module's; a lazy method is compiled inside a class
    statement, which gives its ``__annotate__`` the ``__classdict__`` cell that
    ``_annotate_of`` points at the live class (a class body itself cannot read the exec's
    scope, so eager methods are not wrapped)."""
    fn = copy.deepcopy(node)
    fn.decorator_list = []
    fn.body = [ast.copy_location(ast.Pass(), node)]
    fn.args.defaults = [ast.copy_location(ast.Constant(None), d) for d in fn.args.defaults]
    fn.args.kw_defaults = [d if d is None else ast.copy_location(ast.Constant(None), d)
                           for d in fn.args.kw_defaults]
    body: List[ast.stmt] = [fn]
    if owner is not None and lazy:
        cls = ast.ClassDef(name=q.rsplit(".", 2)[-2], bases=[], keywords=[],  # type: ignore[call-arg]
                           body=body, decorator_list=[])   # (3.12's stub requires type_params)
        cls.__dict__["type_params"] = []   # a field since 3.12 (only 3.14+ gets here)
        body = [ast.copy_location(cls, node)]
    tree = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    flags = __future__.annotations.compiler_flag if future else 0
    # a class body reads its own namespace first, then the module's (as _eval_defaults)
    scope = collections.ChainMap({}, pending, dict(vars(owner)) if owner else {}, ns)
    try:
        exec(compile(tree, filename, "exec", flags=flags, dont_inherit=True),
             module.__dict__, scope)
    except Exception as exc:
        raise _evaluation_refused(exc, f"evaluating the new annotations of {module.__name__}:{q}",
                                  {"module": module.__name__, "function": q}) from exc
    made = scope.maps[0][body[0].name]   # type: ignore[attr-defined]
    if owner is not None and lazy:
        made = vars(made)[fn.name]
    return made  # type: ignore[no-any-return]


def _annotate_of(stub: FunctionType, module: types.ModuleType, owner: Optional[type],
                 pending: Dict[str, Any], f: FunctionType) -> Any:
    """The stub's ``__annotate__`` rebuilt against the live module (and class)."""
    made = stub.__annotate__  # type: ignore[attr-defined]
    if made is None:
        return None   # the fixed def has no annotations
    # A method's __annotate__ reads names through a __classdict__ cell: in a fresh process,
    # the namespace its class body filled. Here: the live class's, with this patch's changes.
    classdict = {**(dict(vars(owner)) if owner else {}), **pending}
    cells = {"__classdict__": types.CellType(classdict)}
    if set(made.__code__.co_freevars) - set(cells):
        raise RestartRequired(
            f"The fixed annotations of {module.__name__}:{f.__qualname__} read "
            f"{', '.join(made.__code__.co_freevars)} from an enclosing scope, which a live "
            "function cannot be given. Nothing was changed; restart the process.",
            details={"module": module.__name__, "function": f.__qualname__})
    closure = tuple(cells[n] for n in made.__code__.co_freevars)
    new = FunctionType(made.__code__, module.__dict__, made.__name__, None, closure or None)
    new.__qualname__ = f"{f.__qualname__}.__annotate__"
    return new


def _holders(old: Any, f: FunctionType) -> List[Any]:
    """Where ``functools.update_wrapper`` copied ``f``'s ``__annotate__``: ``(kind, obj,
    key)`` of wrapper functions and of the ``__dict__`` of other wrappers (lru_cache)."""
    if old is None:
        return []
    out: List[Any] = []
    for r in gc.get_referrers(old):
        if type(r) is FunctionType and r is not f and r.__annotate__ is old:  # type: ignore[attr-defined]
            out.append(("attr", r, "__annotate__"))
        elif type(r) is dict and r.get("__annotate__") is old and "__wrapped__" in r:
            out.append(("item", r, "__annotate__"))
    return out
