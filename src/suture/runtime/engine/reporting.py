"""Status: the applied patches as data, verified against the live objects.

Enters: ``_applied`` (read under the engine lock). Leaves: one dict per patch, and
the old code objects that ``_activeness.active`` then looks for outside the lock.
Invariant: reads only; changes nothing (``snapshot`` fills a record's ``live`` when the
engine has just patched a module).

Status never trusts its own record: a module the record says is "applied" is checked
(``verify``) against what the process holds now. The module in ``sys.modules`` must be
the object that was patched, and each function the patch changed, looked up again by its
qualified name in the module's namespace and its classes' own dicts, must be the object
that held the fixed code right after the commit and still run that code object (or be
another function, or a wrapper whose ``__wrapped__`` chain leads to a function, running
that very code). Anything else is "reverted by the application" (SUT-E211): a reload the
import hook did not serve, ``f.__code__`` set back, a name rebound, the module replaced.
Cost: one dict lookup per name and function, no heap walk.
"""

from __future__ import annotations

import sys
import types
from types import FunctionType
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._state import _Record, _applied, _isa, _own_dict, live_module

_CLASS_DICT = type.__dict__["__dict__"].__get__   # a class's own members (no metaclass code)
_MISSING = object()
REVERTED = "reverted by the application"
# The module-state half of the check (``verify.reset_paths``), handed over by the package
# (engine/__init__.py) rather than imported: verify is a step of apply in this module's
# own layer (tests/runtime/test_import_graph.py).
state_check: Optional[Callable[[Any, str, types.ModuleType], List[str]]] = None


def records() -> Tuple[List[Dict[str, Any]], Dict[int, Tuple[Any, ...]]]:
    """Under the engine lock: each applied patch as data, and the old code objects by id
    (what ``active`` looks for, outside the lock)."""
    patches = [{
        "id": r.patch.id, "target": dict(r.patch.target), "describe": r.patch.describe(),
        "cves": list(r.patch.meta.get("cves", [])),
        "modules": {m: "applied" if st == "pending add" and m in sys.modules else st
                    for m, st in r.modules.items()},
        "applied_at": r.applied_at, "pause_ns": r.pause_ns, "ops": len(r.ops),
        "caveats": list(r.caveats), "notes": list(r.notes), "verified": dict(r.verified),
        "live": verify(r),
    } for r in _applied.values()]
    old = {k: (v[0], v[1], r.patch.id) for r in _applied.values()
           for k, v in r.old_codes.items()}
    return patches, old


def _resolve(ns: Optional[Dict[str, Any]], qualname: str) -> Any:
    """What ``qualname`` names now, from the module's namespace through classes' own dicts
    (no attribute lookup: no application code runs); staticmethod/classmethod unwrapped."""
    if ns is None or "<locals>" in qualname:
        return _MISSING
    parts = qualname.split(".")
    obj = ns.get(parts[0], _MISSING)
    for part in parts[1:]:
        if not _isa(obj, type):
            return _MISSING
        obj = _CLASS_DICT(obj).get(part, _MISSING)
    if _isa(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return obj


def _function(obj: Any) -> Optional[FunctionType]:
    """The function ``obj`` is, or wraps (``__wrapped__``, up to 8 levels)."""
    for _ in range(8):
        if type(obj) is FunctionType:
            return obj
        obj = (_own_dict(obj) or {}).get("__wrapped__")
        if obj is None:
            return None
    return None


def _runs(obj: Any, codes: Any) -> bool:
    """Whether ``obj``, or what it wraps (``__wrapped__``, up to 8 levels), runs one of
    ``codes`` (code objects by id)."""
    for _ in range(8):
        if type(obj) is FunctionType and codes.get(id(obj.__code__)) is obj.__code__:
            return True
        obj = (_own_dict(obj) or {}).get("__wrapped__")
        if obj is None:
            return False
    return False


def snapshot(rec: _Record, name: str, module: types.ModuleType) -> None:
    """Right after ``rec`` patched ``module`` (under the engine lock): what each function the
    patch changed there resolves to, for ``verify``."""
    ns = _own_dict(module)
    quals: List[str] = []
    for o in rec.ops:
        if o.kind == "call":
            continue
        q: Optional[str] = None
        if o.kind == "attr" and o.key == "__code__" and type(o.obj) is FunctionType:
            if o.obj.__globals__ is ns:
                q = o.obj.__qualname__
        elif o.kind == "item" and o.obj is ns and type(o.key) is str:
            q = o.key if _function(o.new) is not None else None
        elif o.kind == "attr" and _isa(o.obj, type) and type(o.key) is str \
                and _CLASS_DICT(o.obj).get("__module__") == name:
            new = o.new.__func__ if _isa(o.new, (staticmethod, classmethod)) else o.new
            q = f"{o.obj.__qualname__}.{o.key}" if _function(new) is not None else None
        if q and q not in quals:
            quals.append(q)
    entries: List[Tuple[str, Any, Any, Any]] = []
    for q in quals:
        obj = _resolve(ns, q)
        fn = _function(obj) if obj is not _MISSING else None
        if fn is not None:
            entries.append((q, obj, fn, fn.__code__))
    rec.live[name] = (module, entries)


def drift(rec: _Record) -> Dict[str, str]:
    """Per applied module whose live objects are no longer what ``rec`` installed: how."""
    out: Dict[str, str] = {}
    newer = list(_applied.values())
    newer = newer[newer.index(rec) + 1:] if rec in newer else []
    for name, (module, entries) in rec.live.items():
        if rec.modules.get(name) != "applied":
            continue
        now = live_module(name)   # a script's is __main__ (docs/engine.md, "Scripts")
        if now is None:
            continue   # removed: a new import goes through the hook and is patched
        if now is not module:
            out[name] = (f"{name} in sys.modules is another module object than the one "
                         "patched (replaced, or imported again without Suture's import hook)")
            continue
        ns = _own_dict(module)
        hows: List[str] = []
        fresh: List[str] = []
        for q, obj, fn, code in entries:
            cur = _resolve(ns, q)
            if cur is _MISSING:
                continue   # gone: nothing runs old code through this name
            # a newer patch stacked on this one may have changed the function again
            codes = {id(c): c for r in newer for q2, _, _, c in r.live.get(name, (None, []))[1]
                     if q2 == q}
            codes[id(code)] = code
            if _runs(cur, codes):
                continue   # the fixed code, however it is bound or wrapped now
            cur_fn = _function(cur)
            if cur_fn is fn or cur is obj:
                old = fn.__code__ if cur_fn is None else cur_fn.__code__
                back = id(old) in rec.old_codes and rec.old_codes[id(old)][0] is old
                hows.append(f"{q}'s __code__ was replaced"
                            + (" by the baseline's" if back else " by code the patch did "
                               "not install"))
            elif cur_fn is not None and cur_fn.__code__.co_filename == (ns or {}).get(
                    "__file__"):
                fresh.append(q)
            else:
                hows.append(f"{q} is bound to another object than the fixed function")
        if fresh:
            hows.insert(0, f"{name} was executed again without Suture's import hook (a reload "
                           f"behind another finder?): {', '.join(fresh[:3])}"
                           + (f" and {len(fresh) - 3} more" if len(fresh) > 3 else "")
                           + " are new functions from the file on disk")
        if not hows:
            reset = state_check(rec.patch, name, module) if state_check is not None else []
            if reset:
                hows.append(f"module state is the baseline's again where the fix changed it: "
                            f"{', '.join(reset[:3])}"
                            + (f" and {len(reset) - 3} more" if len(reset) > 3 else ""))
        if hows:
            out[name] = "; ".join(hows[:3]) + (f"; and {len(hows) - 3} more" if len(hows) > 3
                                               else "")
    return out


def verify(rec: _Record) -> Dict[str, str]:
    """Per module of ``rec`` that the engine patched in place: "verified", or
    "reverted by the application (SUT-E211): how"."""
    gone = drift(rec)
    return {name: (f"{REVERTED} (SUT-E211): {gone[name]}" if name in gone else "verified")
            for name in rec.live if rec.modules.get(name) == "applied"}
