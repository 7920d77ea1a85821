"""The reference graph around a module: who holds what the patch replaces.

Shared analysis, used by prepare (which references to rebind, which caches to clear)
and by post and the patch hooks (classes by qualname). Enters: live modules, plans,
prepared ``_ModuleTxn``. Leaves: lists of (namespace, name) places and ``commit.Op``;
nothing here changes an application object.
Covers: a module's live functions (``_module_functions``), ``functools.lru_cache``
wrappers and the stale caches among them (``_lru_wrappers``, ``_stale_caches``),
modules that imported a name from another (``_importers``, ``_from_imports``), a
module's source tree, and classes by qualname (``_resolve_class``).
Invariant: the lru_cache heap walk is kept in ``_state._walks``, so one apply walks the heap
once per kind; the application's __getattr__/__getattribute__ are never run.
"""

from __future__ import annotations

import ast
import gc
import sys
import types
from types import FunctionType
from typing import Any, Dict, List, Optional, Set, Tuple

from .. import _codes
from .commit import Call
from ._state import (_LRU_MARK, _LRU_TYPE, _ModuleTxn, _isa, _own_dict, _raise_os_failure,
                     _walks)


def _module_functions(module: types.ModuleType, files: Set[str]) -> List[FunctionType]:
    """Every live function defined by this module: its globals are the module's dict.

    Never ``gc.get_objects()``: it hands out new references to *every* tracked
    object, including a tuple another thread is still building (``tuple(gen)``
    suspended in Python code); when that thread resumes, ``_PyTuple_Resize``
    sees a second reference and raises SystemError in the application. The
    referrers of one specific object are only objects that already point at it.
    """
    d = module.__dict__
    if _LRU_MARK is not None and _walks.get("scope") and "lru" not in _walks:
        # One walk for both: referrers of two objects cost 5.3 ms where two walks cost
        # 9.1 (48 k objects), and every walk stops the application's threads.
        found = gc.get_referrers(d, _LRU_MARK)
        _walks["lru"] = _lru_rows(w for w in found if type(w) is _LRU_TYPE)
    else:
        found = gc.get_referrers(d)
    return [f for f in found if type(f) is FunctionType and f.__code__.co_filename in files
            and not _codes.is_annotate(f.__code__)]   # annotation code: see there


def _stale_caches(txns: List[_ModuleTxn]) -> List[Any]:
    """Clear caches elsewhere that may hold answers of the code being replaced.

    ``acl.allowed`` (``@lru_cache``, in a module the patch does not touch) calls
    ``rules.limit_for``, which it changes: its cached answers are the old
    code's. Every ``lru_cache``/``cache`` bound in a module or class namespace
    is checked (every wrapper in the heap: ``_lru_wrappers``): if its
    function reads (through its globals, up to 4 calls deep) a function whose
    code or defaults change, a class the patch alters, or a global the patch rebinds, it is
    cleared in the commit. Without ``_LRU_MARK`` (a Python whose ``functools`` differs),
    caches reached only through other paths (instances, closures) are not found.
    """
    tainted: Set[int] = set()
    rebound: Set[Tuple[int, Any]] = set()
    cleared: Set[int] = set()
    for t in txns:
        tainted |= t.changed_funcs
        cleared |= t.cleared
        for o in t.first_ops + t.ops:
            if o.kind == "item":
                rebound.add((id(o.obj), o.key))
            elif o.kind == "attr" and (_isa(o.obj, type) or type(o.obj) is FunctionType):
                tainted.add(id(o.obj))   # a class altered; a function's defaults changed
    if not tainted and not rebound:
        return []
    memo: Dict[int, bool] = {}

    def reaches(fn: Any, depth: int) -> bool:
        while type(fn) is not FunctionType:
            fn = (_own_dict(fn) or {}).get("__wrapped__")
            if fn is None:
                return False
        if id(fn) in memo:
            return memo[id(fn)]
        memo[id(fn)] = False  # cycles end here
        g = fn.__globals__
        names = set(fn.__code__.co_names)
        for _, c in _codes.walk(fn.__code__, ""):
            names.update(c.co_names)
        hit = id(fn) in tainted
        # what it reads: its globals, and attributes of the modules among them
        # (``store.calc_b4``: co_names holds the attribute's name too)
        spaces = [g] + [d for d in (_own_dict(g.get(n)) for n in names
                                    if type(g.get(n)) is types.ModuleType) if d is not None]
        for n in names:
            if hit:
                break
            for space in spaces:
                if (id(space), n) in rebound:
                    hit = True
                    break
                obj = space.get(n)
                if obj is None:
                    continue
                if id(obj) in tainted or (depth > 0 and reaches(obj, depth - 1)):
                    hit = True
                    break
        memo[id(fn)] = hit
        return hit

    out: List[Any] = []
    for where, w in _lru_wrappers():
        if id(w) not in cleared and reaches(w, 4):
            cleared.add(id(w))
            out.append(Call(w.cache_clear, f"cache_clear {where}"))
    return out


def _lru_rows(wrappers: Any) -> List[Tuple[str, Any]]:
    rows = []
    for w in wrappers:
        names = _own_dict(w) or {}
        rows.append((f"{names.get('__module__')}:{names.get('__qualname__')}", w))
    return rows


def _lru_wrappers() -> List[Tuple[str, Any]]:
    """Every ``lru_cache`` wrapper that may hold stale answers, with where it lives.

    Every wrapper refers to ``_LRU_MARK`` (the wrapper type on 3.10+, ``functools._CacheInfo``
    on 3.9), so one ``gc.get_referrers`` walk (in C) finds every wrapper, wherever it is
    bound (module, class, instance, closure). Without a mark, wrappers bound in module
    and class namespaces are found by scanning ``sys.modules``, a Python loop that costs
    tens of ms in a Flask worker (the first version did this everywhere: a 20-35 ms
    latency spike under load, docs/performance.md).
    """
    if _LRU_MARK is not None:
        found = _walks.get("lru")   # one walk per apply: prepare and _stale_caches share it
        if found is None:
            found = _lru_rows(w for w in gc.get_referrers(_LRU_MARK) if type(w) is _LRU_TYPE)
            if _walks.get("scope"):
                _walks["lru"] = found
        return list(found)
    out: List[Tuple[str, Any]] = []
    for modname, mod in list(sys.modules.items()):
        d = _own_dict(mod)
        if d is None:
            continue
        for v in list(d.values()):
            if type(v) is _LRU_TYPE:
                out.append((modname, v))
            elif _isa(v, type) and vars(v).get("__module__") == modname:
                out.extend((modname, a) for a in list(vars(v).values()) if type(a) is _LRU_TYPE)
    return out


def _importers(modname: str, old: Dict[str, Any]) -> List[Tuple[Dict[str, Any], str, str]]:
    """Module dicts holding ``old`` values through ``from modname import name [as alias]``.

    Identity alone is not proof (small ints and interned strings are shared,
    ``re.compile`` caches patterns), so each candidate module's own source must
    contain the matching import; re-exports through a package follow in turn.
    """
    if not old:
        return []
    targets = {(modname, n): n for n in old}
    by_id = {id(v): n for n, v in old.items()}
    out: List[Tuple[Dict[str, Any], str, str]] = []
    seen: Set[Tuple[str, str]] = set()
    grew = True
    while grew:
        grew = False
        for other_name, other in list(sys.modules.items()):
            d = _own_dict(other)
            if other_name == modname or d is None:
                continue
            hits = [(k, by_id[id(v)]) for k, v in list(d.items()) if id(v) in by_id]
            if not hits:
                continue
            imports = _from_imports(other)
            for alias, orig in hits:
                if (other_name, alias) in seen:
                    continue
                for src_mod, src_name in imports.get(alias, ()):
                    if targets.get((src_mod, src_name)) == orig:
                        seen.add((other_name, alias))
                        targets[(other_name, alias)] = orig
                        out.append((d, alias, orig))
                        grew = True
                        break
    return out


def _from_imports(module: types.ModuleType) -> Dict[str, List[Tuple[str, str]]]:
    """alias -> [(absolute module, name)] for every ``from ... import`` in its source."""
    tree = _source_tree(module)
    if tree is None:
        return {}
    package = getattr(module, "__package__", None) or ""
    out: Dict[str, List[Tuple[str, str]]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".") if package else []
            if node.level > 1:
                parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(p for p in parts + ([node.module] if node.module else []) if p)
        for a in node.names:
            out.setdefault(a.asname or a.name, []).append((base, a.name))
    return out


def _resolve_class(module: types.ModuleType, qualname: str) -> Optional[type]:
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is module else obj.__dict__.get(part)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _source_tree(module: types.ModuleType) -> Optional[ast.Module]:
    source = None
    loader = getattr(module, "__loader__", None)
    try:
        if loader is not None and hasattr(loader, "get_source"):
            source = loader.get_source(module.__name__)
    except Exception as exc:  # no source (extension module, zip without it): nothing to find
        _raise_os_failure(exc, getattr(module, "__file__", None),
                          f"reading the source of {module.__name__}")
        source = None
    if source is None:
        return None
    try:
        return ast.parse(str(source))
    except SyntaxError:
        return None
