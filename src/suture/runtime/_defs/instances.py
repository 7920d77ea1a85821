"""What exists before a patch: instance state the other side's methods read, and calls
that frames of the old code would make to a callee the patch changed.

Enters: the old and new trees of one module. Leaves: ``StateDelta``s (per class,
attribute and direction) and ``CallHazard``s (data); the engine decides from them what
to install on live classes, what to count among live objects and which running frames
to look for (``engine/_objects.py``).

A delta in direction "apply" is an attribute the *fixed* methods read that objects
built by the *old* code may lack; "revert" is the same with the two sides exchanged
(objects built while the patch was applied, read by the old methods after a revert).
How it is met:
  derived    set exactly once, unconditionally, at the top of the side's own
             ``__init__``, from constants, module globals, safe constructors and
             defaults of parameters the other side's ``__init__`` did not have (so no
             caller of the other side could have passed them), and, when the value is
             a fresh mutable object, never mutated after: an old object's right value
             is what a new object gets, computed per object on its first read
  migration  set by the side's code in another way (a counter, a cache, a flag set
             later, a constructor argument): a person decides (``MIGRATIONS``)
  unknown    set nowhere the builder can see while the class sets attributes
             dynamically (``setattr``, ``__dict__``, ``vars``): it may be set there
An attribute read but set nowhere in the module, by a class that sets none dynamically,
is no delta: an outside base class or the code using the object sets it, for old and new
objects alike (``urllib3``'s pools read ``self.headers``, set by a base in another
module).
Invariant: only ``ast``; the builder and the engine compute the same deltas.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .syntax import FuncNode, bound_names, dump, iter_classes, iter_functions, walk


@dataclass(frozen=True)
class StateDelta:
    cls: str            # class qualname in its module
    attr: str
    direction: str      # "apply" | "revert"
    how: str            # "derived" | "migration" | "unknown"
    value: str = ""     # derived: the expression, as source
    params: Tuple[str, ...] = ()   # derived: ``__init__`` parameters it reads (defaults)
    why: str = ""       # one clause for the report
    readers: Tuple[str, ...] = ()  # the methods that read it
    initial: str = ""   # the literal the side's __init__ sets it to, if it is one
    later: bool = False  # also set after construction (by another method)

    @property
    def place(self) -> str:
        return f"{self.cls}.{self.attr}"


@dataclass(frozen=True)
class CallHazard:
    caller: str         # qualname of the old caller (its old code may be running)
    callee: str         # qualname of the changed callee
    line: int           # line of the call in the old source
    why: str


# Constructors that take no state from outside and whose result depends only on their
# arguments: a fresh object per call, like a literal. Dotted as imported.
SAFE_CALLS = frozenset({
    "dict", "list", "set", "frozenset", "tuple", "int", "float", "str", "bytes",
    "bytearray", "bool", "object", "complex",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter", "threading.Lock", "threading.RLock", "weakref.WeakSet",
    "weakref.WeakValueDictionary", "weakref.WeakKeyDictionary",
})
# A lock has no history a new object would have and an old one lacks: calling its
# methods does not make a fresh one wrong.
_NO_HISTORY = frozenset({"threading.Lock", "threading.RLock"})
# Methods that read a container without changing it.
_READERS = frozenset({"get", "keys", "values", "items", "copy", "count", "index",
                      "__contains__", "__len__", "__getitem__", "startswith", "endswith",
                      "format", "join", "split", "strip", "lower", "upper", "match",
                      "search", "fullmatch", "findall", "finditer", "sub", "issubset",
                      "issuperset", "isdisjoint", "union", "intersection", "difference"})
_DYNAMIC = ("setattr", "__dict__", "vars")


def instance_deltas(old: ast.Module, new: ast.Module) -> List[StateDelta]:
    """Both directions, for every class defined in both trees whose methods changed."""
    old_classes, new_classes = dict(iter_classes(old.body)), dict(iter_classes(new.body))
    old_imports, new_imports = _imports(old), _imports(new)
    out: List[StateDelta] = []
    try:
        for q in sorted(old_classes.keys() & new_classes.keys()):
            o, n = old_classes[q], new_classes[q]
            om, nm = {m.name: m for m in _methods(o)}, {m.name: m for m in _methods(n)}
            if om.keys() == nm.keys() and all(_d(om[k]) == _d(nm[k]) for k in om):
                continue   # no method changed: nothing reads anything new
            out += _deltas(q, o, n, old_classes, new_classes, "apply", new_imports, new)
            out += _deltas(q, n, o, new_classes, old_classes, "revert", old_imports, old)
    finally:
        _MEMO.clear()
    return out


# Dumps and per-class walks, kept for one analysis (cleared when it ends): a big class
# (pypdf's PdfReader) is otherwise dumped and walked several times per direction.
_MEMO: Dict[Any, Tuple[Any, Any]] = {}


def _d(node: ast.AST) -> str:
    hit = _MEMO.get(id(node))
    if hit is None or hit[0] is not node:
        hit = (node, dump(node))
        _MEMO[id(node)] = hit
    return str(hit[1])


def _once(kind: str, cls: ast.ClassDef, compute: Any) -> Any:
    key = (kind, id(cls))
    hit = _MEMO.get(key)
    if hit is None or hit[0] is not cls:
        hit = (cls, compute())
        _MEMO[key] = hit
    return hit[1]


def _deltas(q: str, before: ast.ClassDef, after: ast.ClassDef,
            before_all: Dict[str, ast.ClassDef], after_all: Dict[str, ast.ClassDef],
            direction: str, imports: Dict[str, str], module: ast.Module) -> List[StateDelta]:
    """Attributes ``after``'s changed methods read that objects ``before`` built lack
    (``module``: the tree ``after`` belongs to)."""
    before_methods = {m.name: m for m in _methods(before)}
    reads: Dict[str, List[str]] = {}
    for m in _methods(after):
        old_m = before_methods.get(m.name)
        if old_m is not None and _d(old_m) == _d(m):
            continue   # an unchanged method read it before too
        me = _self_name(m)
        if me is None:
            continue
        augmented = {id(n.target) for n in ast.walk(m) if isinstance(n, ast.AugAssign)}
        for node in ast.walk(m):   # ``self.n += 1`` reads self.n too
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == me and (isinstance(node.ctx, ast.Load)
                                                 or id(node) in augmented):
                reads.setdefault(mangled(after.name, node.attr), []).append(m.name)
    if not reads:
        return []
    had = _once("provided", before, lambda: _provided(before, before_all))
    has_class = _once("class_level", after, lambda: _class_level(after, after_all))
    sets = _once("assignments", after, lambda: _assignments(after, after_all))
    dynamic = _once("dynamic", after, lambda: _dynamic(after, after_all)) \
        or _once("dynamic", before, lambda: _dynamic(before, before_all))
    # Methods this side adds: the other side's code never called them, so what they write
    # is no part of an older object's history. Unless the class also stops setting an
    # attribute the other side set: the new one may be that state renamed.
    dropped = set(_once("assignments", before, lambda: _assignments(before, before_all))) \
        - set(sets)
    later = set() if dropped else ({m.name for m in _methods(after)}
                                   - {m.name for m in _methods(before)})
    out = []
    for attr in sorted(reads):
        if attr in had or attr in has_class or attr.startswith("__") and attr.endswith("__"):
            continue
        readers = tuple(sorted(set(reads[attr])))
        if attr not in sets:
            if dynamic:
                out.append(StateDelta(q, attr, direction, "unknown", readers=readers,
                                      why="the class sets attributes dynamically (setattr, "
                                      "__dict__), so the builder cannot tell whether older "
                                      "objects have it"))
            continue
        value, params, why = _derivation(attr, after, before, sets[attr], imports, later,
                                         module)
        initial = _literal_init(sets[attr])
        set_later = any(m != "__init__" for m, _ in sets[attr])
        if value is None:
            out.append(StateDelta(q, attr, direction, "migration", why=why, readers=readers,
                                  initial=initial, later=set_later))
        else:
            out.append(StateDelta(q, attr, direction, "derived", value, params,
                                  why=why, readers=readers, initial=initial, later=set_later))
    return out


def mangled(cls_name: str, name: str) -> str:
    """``name`` as the compiler stores it when written in class ``cls_name``'s body:
    ``self.__x`` in class ``Box`` is ``self._Box__x``."""
    if not name.startswith("__") or name.endswith("__"):
        return name
    stripped = cls_name.lstrip("_")
    return f"_{stripped}{name}" if stripped else name


def _literal_init(sets: List[Tuple[str, ast.AST]]) -> str:
    """The literal (``False``, ``0``, ``None``, ``''``) one ``__init__`` assignment gives."""
    in_init = [s for m, s in sets if m == "__init__"]
    if len(in_init) != 1 or not isinstance(in_init[0], (ast.Assign, ast.AnnAssign)):
        return ""
    value = in_init[0].value
    if isinstance(value, ast.Constant) and type(value.value) in (bool, int, float, str,
                                                                 bytes, type(None)):
        return repr(value.value)
    return ""


def _methods(cls: ast.ClassDef) -> Iterator[FuncNode]:
    for s in cls.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield s


def _self_name(fn: FuncNode) -> Optional[str]:
    for d in fn.decorator_list:
        name = d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) \
            else ""
        if name in ("staticmethod", "classmethod"):
            return None
    args = [*fn.args.posonlyargs, *fn.args.args]
    return args[0].arg if args else None


def _family(cls: ast.ClassDef, classes: Dict[str, ast.ClassDef]) -> List[ast.ClassDef]:
    """``cls`` and its bases defined in the same module (by simple name), nearest first."""
    out: List[ast.ClassDef] = []
    todo = [cls]
    while todo:
        c = todo.pop(0)
        if any(c is x for x in out):
            continue
        out.append(c)
        for b in c.bases:
            if isinstance(b, ast.Name) and b.id in classes:
                todo.append(classes[b.id])
    return out


def _class_level(cls: ast.ClassDef, classes: Dict[str, ast.ClassDef]) -> Set[str]:
    out: Set[str] = set()
    for c in _family(cls, classes):
        for s in c.body:
            out.update(mangled(c.name, n) for n in bound_names(s))
            if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                out.add(s.target.id)   # a declared field: its generated __init__ sets it
    return out


def _provided(cls: ast.ClassDef, classes: Dict[str, ast.ClassDef]) -> Set[str]:
    """What objects of ``cls`` can have: set on self by any method, or class-level."""
    out = _class_level(cls, classes)
    for c in _family(cls, classes):
        for m in _methods(c):
            me = _self_name(m)
            for node, _ in _self_stores(m, me):
                out.add(mangled(c.name, node.attr))
    return out


def _self_stores(fn: FuncNode, me: Optional[str]) -> Iterator[Tuple[ast.Attribute, ast.AST]]:
    """``self.X`` targets of assignments in ``fn`` (nested code included), each with the
    statement that assigns it."""
    if me is None:
        return
    for sub in ast.walk(fn):
        targets: List[ast.expr] = []
        if isinstance(sub, ast.Assign):
            targets = [e for t in sub.targets for e in _unpacked(t)]
        elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)):
            targets = [sub.target]
        elif isinstance(sub, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith,
                              ast.NamedExpr)):
            targets = [e for t in _for_targets(sub) for e in _unpacked(t)]
        elif isinstance(sub, ast.Delete):
            targets = list(sub.targets)
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) \
                    and t.value.id == me:
                yield t, sub


def _for_targets(node: ast.AST) -> List[ast.expr]:
    if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr)):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [i.optional_vars for i in node.items if i.optional_vars is not None]
    return []


def _unpacked(t: ast.expr) -> List[ast.expr]:
    if isinstance(t, (ast.Tuple, ast.List)):
        return [e for x in t.elts for e in _unpacked(x)]
    if isinstance(t, ast.Starred):
        return _unpacked(t.value)
    return [t]


def _assignments(cls: ast.ClassDef, classes: Dict[str, ast.ClassDef]
                 ) -> Dict[str, List[Tuple[str, ast.AST]]]:
    """attr -> [(method name, statement)] for every ``self.attr`` store in the family."""
    out: Dict[str, List[Tuple[str, ast.AST]]] = {}
    for c in _family(cls, classes):
        for m in _methods(c):
            owner = m.name if c is cls else f"{c.name}.{m.name}"
            for node, stmt in _self_stores(m, _self_name(m)):
                out.setdefault(mangled(c.name, node.attr), []).append((owner, stmt))
    return out


def _dynamic(cls: ast.ClassDef, classes: Dict[str, ast.ClassDef]) -> bool:
    for c in _family(cls, classes):
        for node in ast.walk(c):
            if isinstance(node, ast.Name) and node.id in _DYNAMIC \
                    or isinstance(node, ast.Attribute) and node.attr in _DYNAMIC:
                return True
    return False


def _derivation(attr: str, cls: ast.ClassDef, other: ast.ClassDef,
                sets: List[Tuple[str, ast.AST]], imports: Dict[str, str], later: Set[str],
                module: ast.Module) -> Tuple[Optional[str], Tuple[str, ...], str]:
    """(expression source, parameters it reads, why) when an old object's value is proved
    to be what a new one gets; (None, (), why not) otherwise. Writes in ``later`` (methods
    the other side's class does not have) are no part of an older object's history."""
    in_init = [s for m, s in sets if m == "__init__"]
    where = sorted({m for m, _ in sets} - later - {"__init__"})
    if where or len(in_init) != 1:
        return None, (), "set in " + ", ".join(f"{m}()" for m in sorted({m for m, _ in sets})) \
            + (" more than once" if len(in_init) > 1 else "")
    init = next(m for m in _methods(cls) if m.name == "__init__")
    stmt = in_init[0]
    if not any(stmt is s for s in init.body) or not isinstance(stmt, (ast.Assign,
                                                                      ast.AnnAssign)) \
            or isinstance(stmt, ast.Assign) and len(stmt.targets) != 1 \
            or not isinstance(stmt.targets[0] if isinstance(stmt, ast.Assign)
                              else stmt.target, ast.Attribute) or stmt.value is None:
        return None, (), "set conditionally or by unpacking in __init__()"
    for s in init.body:
        if s is stmt:
            break
        if any(isinstance(n, (ast.Return, ast.Raise)) for n in ast.walk(s)):
            return None, (), "__init__() may return or raise before setting it"
    rebound = _rebindable(module)
    old_init = next((m for m in _methods(other) if m.name == "__init__"), None)
    old_params = _params(old_init) if old_init is not None else None
    new_defaults = _defaulted(init)
    local = _locals(init)
    params: List[str] = []
    bad = _unproved(stmt.value, imports, local, new_defaults, old_params, init, params,
                    rebound)
    if bad:
        return None, (), bad
    fresh = _fresh_mutable(stmt.value, imports)
    if fresh:
        mutated = _mutated(attr, cls, init, later)
        if mutated:
            return None, (), f"a fresh {fresh} that {mutated} changes (its history " \
                "differs between an old object and a new one)"
    also = sorted({m for m, _ in sets} & later)
    return ast.unparse(stmt.value), tuple(params), "set once in __init__() from " + (
        "defaults of new parameters, " if params else "") + "constants and module globals" + (
        "; also by " + ", ".join(f"{m}()" for m in also) + ", which the older code never "
        "called" if also else "")


def only_adds_state(old: Optional[FuncNode], new: Optional[FuncNode],
                    deltas: List[StateDelta], cls: str, cls_name: str) -> bool:
    """Is the new ``__init__`` the old one plus parameters with defaults and statements that
    set instance state the fixed methods read (``deltas``)? Then an object the old one
    built is an older object like any other: derived on first read, migrated, or the apply
    refuses while it lives (SUT-E209); it is kept, with what the process did to it, rather
    than built again (which would drop that)."""
    if old is None or new is None or old.decorator_list or new.decorator_list:
        return False
    derived = {d.attr for d in deltas if d.cls == cls and d.direction == "apply"}
    if not derived:
        return False
    added = _params(new) - _params(old)
    if "*" in added or not added <= _defaulted(new) | set():
        return False
    a = new.args
    positional = [*a.posonlyargs, *a.args]
    defaults = dict(zip([p.arg for p in positional[len(positional) - len(a.defaults):]],
                        a.defaults))
    kept = [p for p in positional if p.arg not in added]
    trimmed = ast.arguments(
        posonlyargs=[p for p in a.posonlyargs if p.arg not in added],
        args=[p for p in a.args if p.arg not in added], vararg=a.vararg,
        kwonlyargs=[p for p, _ in zip(a.kwonlyargs, a.kw_defaults) if p.arg not in added],
        kw_defaults=[d for p, d in zip(a.kwonlyargs, a.kw_defaults) if p.arg not in added],
        kwarg=a.kwarg, defaults=[defaults[p.arg] for p in kept if p.arg in defaults])
    if dump(trimmed) != dump(old.args):
        return False
    me = _self_name(new)
    old_locals = _locals(old)
    body = [s for s in new.body if not (
        isinstance(s, (ast.Assign, ast.AnnAssign))
        and [t for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
             if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
             and t.value.id == me and mangled(cls_name, t.attr) in derived] != []
        or _quiet_local(s, old_locals))]
    return dump(ast.Module(body=body, type_ignores=[])) == dump(
        ast.Module(body=old.body, type_ignores=[]))


def _rebindable(module: ast.Module) -> Set[str]:
    """Module globals some function of the module rebinds (``global NAME`` and an
    assignment): their value when an old object was built is not their value now."""
    out: Set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Global):
            out.update(node.names)
    return out


_PURE = frozenset({"len", "min", "max", "int", "str", "float", "bool", "tuple", "list",
                   "dict", "set", "frozenset", "sorted", "abs", "round", "repr"})


def _quiet_local(stmt: ast.stmt, old_locals: Set[str]) -> bool:
    """A new statement binding a local name the old ``__init__`` did not have, from an
    expression with no calls but to a few builtins: it changes nothing outside the frame
    (``width = len(name)`` before ``self.width = width``)."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id not in old_locals):
        return False
    return all(isinstance(n.func, ast.Name) and n.func.id in _PURE
               for n in ast.walk(stmt.value) if isinstance(n, ast.Call)) \
        and not any(isinstance(n, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr))
                    for n in ast.walk(stmt.value))


def _params(fn: FuncNode) -> Set[str]:
    a = fn.args
    out = {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
    if a.vararg or a.kwarg:
        out.add("*")   # callers could have passed anything
    return out


def _defaulted(fn: FuncNode) -> Set[str]:
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    out = {p.arg for p in positional[len(positional) - len(a.defaults):]} if a.defaults \
        else set()
    out |= {p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None}
    return out


def _locals(fn: FuncNode) -> Set[str]:
    """Names bound in ``fn`` other than by its parameters (anywhere; conservative)."""
    out: Set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def _dotted(e: ast.expr, imports: Dict[str, str]) -> str:
    parts: List[str] = []
    while isinstance(e, ast.Attribute):
        parts.append(e.attr)
        e = e.value
    if not isinstance(e, ast.Name):
        return ""
    head = imports.get(e.id, e.id)
    return ".".join([head, *reversed(parts)])


def _unproved(e: ast.expr, imports: Dict[str, str], local: Set[str], defaults: Set[str],
              old_params: Optional[Set[str]], init: FuncNode, params: List[str],
              rebound: Set[str]) -> str:
    """Why ``e`` is not a value every object would get alike; "" when it is."""
    own = _params(init) - {"*"}
    me = _self_name(init)
    # names first: "depends on the constructor argument" says more than "calls x.upper()"
    for node in sorted(ast.walk(e), key=lambda n: not isinstance(n, ast.Name)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func, imports)
            if name not in SAFE_CALLS or name.split(".")[0] in local | own:
                return f"its value calls {ast.unparse(node.func)}()"
            if any(isinstance(a, ast.Starred) for a in node.args) \
                    or any(k.arg is None for k in node.keywords):
                return "its value unpacks arguments"
        elif isinstance(node, ast.Name):
            if node.id == me:
                return "its value depends on the object's other state"
            if node.id in own:
                if node.id not in defaults:
                    return f"its value depends on the constructor argument `{node.id}`"
                if old_params is None or node.id in old_params or "*" in old_params:
                    return (f"its value depends on the constructor argument `{node.id}`, "
                            "which callers of the older __init__() could pass")
                if node.id in local:
                    return f"`{node.id}` is reassigned in __init__()"
                if node.id not in params:
                    params.append(node.id)
            elif node.id in local:
                return f"its value depends on the local `{node.id}`"
            elif node.id in rebound:
                return (f"its value reads the module global `{node.id}`, which the module "
                        "rebinds at run time (`global`): an older object's value depended "
                        "on it when it was built")
            elif node.id.startswith("__") and not node.id.endswith("__"):
                return f"its value reads the class-private name `{node.id}`"
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                               ast.GeneratorExp, ast.Await, ast.Yield, ast.YieldFrom,
                               ast.NamedExpr, ast.Starred)):
            return "its value is computed by code the builder does not evaluate"
    return ""


def _fresh_mutable(e: ast.expr, imports: Dict[str, str]) -> str:
    if isinstance(e, (ast.List, ast.Dict, ast.Set)):
        return type(e).__name__.lower()
    if isinstance(e, ast.Call):
        name = _dotted(e.func, imports)
        if name in _NO_HISTORY or name in ("int", "float", "str", "bytes", "bool", "tuple",
                                           "frozenset", "complex"):
            return ""
        return name
    return ""


def _mutated(attr: str, cls: ast.ClassDef, init: FuncNode, later: Set[str]) -> str:
    """The first method (besides ``init`` and those in ``later``) that may change
    ``self.attr``'s value in place."""
    for m in _methods(cls):
        if m is init or m.name in later:
            continue
        me = _self_name(m)
        if me is None:
            continue
        parents = {id(c): p for p in ast.walk(m) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(m):
            if not (isinstance(node, ast.Attribute) and mangled(cls.name, node.attr) == attr
                    and isinstance(node.value, ast.Name) and node.value.id == me):
                continue
            p = parents.get(id(node))
            if isinstance(p, ast.Subscript) and not isinstance(p.ctx, ast.Load):
                return f"{m.name}()"
            if isinstance(p, ast.Attribute):
                grand = parents.get(id(p))
                if not isinstance(p.ctx, ast.Load) or (
                        isinstance(grand, ast.Call) and grand.func is p
                        and p.attr not in _READERS):
                    return f"{m.name}()"
            if isinstance(p, ast.Call) and node is not p.func:
                return f"{m.name}() (passed to a call)"
            if isinstance(p, ast.AugAssign) and p.target is node:
                return f"{m.name}()"
    return ""


def _imports(tree: ast.Module) -> Dict[str, str]:
    """Local name -> dotted origin for module-level imports (``from threading import Lock``
    gives ``Lock -> threading.Lock``)."""
    out: Dict[str, str] = {}
    for s in tree.body:
        if isinstance(s, ast.Import):
            for a in s.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(s, ast.ImportFrom) and s.module and not s.level:
            for a in s.names:
                out[a.asname or a.name] = f"{s.module}.{a.name}"
    return out


# -- running frames: old callers of a callee whose signature changed --------------

def call_hazards(old: ast.Module, new: ast.Module, changed: Set[str],
                 old_lines: Optional[List[str]] = None,
                 funcs: Optional[Tuple[Dict[str, FuncNode], Dict[str, FuncNode]]] = None
                 ) -> List[CallHazard]:
    """Calls in changed old functions that the new version of their callee rejects
    (arity, keywords) or whose result the old caller unpacks to another length.
    ``changed``: qualnames of the functions and methods whose code changed (the differ's);
    ``old_lines``: the old source's lines as the parser numbers them (``diff._lines``),
    to skip callers whose text names no changed callee; ``funcs``: ``iter_functions`` of
    both trees, if the caller has them."""
    old_funcs, new_funcs = funcs or (dict(iter_functions(old.body)),
                                     dict(iter_functions(new.body)))
    changed = {q for q in changed if q in old_funcs and q in new_funcs and "<locals>" not in q}
    out: List[CallHazard] = []
    aliases = _aliases(old)
    # Every identifier a call of a changed callee is written with (a superset): below, a
    # caller is walked only if its text holds one.
    callees = {q.rsplit(".", 1)[-1] for q in changed} \
        | {a for a, target in aliases.items() if target in changed}
    for caller in sorted(changed | (old_funcs.keys() - new_funcs.keys())):
        if "<locals>" in caller:
            continue
        fn = old_funcs[caller]
        if old_lines is not None and not _may_call(fn, old_lines, callees):
            continue
        owner = caller.rsplit(".", 1)[0] if "." in caller else ""
        me = _self_name(fn) if owner else None
        # One walk for the calls; the locals and the parent map (two more walks) only for
        # a call of a changed callee: most changed functions call none (apply time).
        shadowed: Optional[Set[str]] = None
        parents: Optional[Dict[int, ast.AST]] = None
        for node in [n for n in walk(fn) if isinstance(n, ast.Call)]:
            callee, bound = "", False
            if isinstance(node.func, ast.Name):
                named = aliases.get(node.func.id, node.func.id)
                if named in changed and named in new_funcs:
                    if shadowed is None:
                        shadowed = _locals(fn) | (_params(fn) - {"*"})
                    if node.func.id not in shadowed:
                        callee = named
            elif owner and me and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == me:
                callee, bound = f"{owner}.{node.func.attr}", True
            if callee not in changed or callee not in new_funcs:
                continue
            why = _rejects(node, old_funcs[callee], new_funcs[callee], bound)
            if not why:
                if parents is None:
                    parents = {id(c): p for p in ast.walk(fn) for c in ast.iter_child_nodes(p)}
                why = _unpacks(node, parents, old_funcs[callee], new_funcs[callee])
            if why:
                out.append(CallHazard(caller, callee, getattr(node, "lineno", 0), why))
    return out


def _may_call(fn: FuncNode, lines: List[str], names: Set[str]) -> bool:
    """Whether ``fn``'s text (decorators to last line) may hold a node named in ``names``.

    False only when the text is ASCII (the parser NFKC-normalises other identifiers, so
    a name in the tree may be spelt otherwise in the text) and none of its runs of
    identifier characters is one of ``names``, but ``fn``'s own name once (the ``def``
    line's), and none that starts with a digit holds one. Every node of ``fn`` is written
    on those lines, and an ASCII name is in the tree as written: a whole run (the
    tokenizer reads an identifier to the run's end, and from its start unless a number
    runs into it, as in ``1if``). So no call in ``fn`` names a changed callee: walking it
    finds nothing to check (apply time: a caller changed along with callees it does not
    call)."""
    first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
    last = getattr(fn, "end_lineno", None)
    if last is None:
        return True
    text = "\n".join(lines[first - 1:last])
    if not text.isascii():
        return True
    own = 0
    for run in _RUNS.findall(text):
        if run in names:
            if run != fn.name or own:
                return True
            own = 1
        elif run[0].isdigit() and not run.isdigit() and any(n in run for n in names):
            return True
    return False


_RUNS = re.compile(r"\w+", re.ASCII)


def _rejects(call: ast.Call, old: FuncNode, new: FuncNode, bound: bool) -> str:
    if dump(old.args) == dump(new.args):
        return ""
    a = new.args
    positional = [p.arg for p in [*a.posonlyargs, *a.args]][1 if bound else 0:]
    posonly = {p.arg for p in a.posonlyargs}
    if any(isinstance(x, ast.Starred) for x in call.args) \
            or any(k.arg is None for k in call.keywords):
        return "the call unpacks arguments and the callee's parameters changed"
    n = len(call.args)
    if n > len(positional) and a.vararg is None:
        return f"passes {n} positional arguments; the new version takes {len(positional)}"
    filled = set(positional[:n])
    names = set(positional) - posonly | {p.arg for p in a.kwonlyargs}
    for k in call.keywords:
        if k.arg not in names and a.kwarg is None:
            return f"passes `{k.arg}=`, which the new version does not take"
        if k.arg in filled:
            return f"passes `{k.arg}` twice under the new version"
        filled.add(str(k.arg))
    required = positional[:len(positional) - len(a.defaults)] if a.defaults else positional
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    missing = [p for p in required if p not in filled]
    if missing:
        return f"does not pass {', '.join(missing)}, which the new version requires"
    return ""


def _unpacks(call: ast.Call, parents: Dict[int, ast.AST], old: FuncNode,
             new: FuncNode) -> str:
    target = parents.get(id(call))
    if not (isinstance(target, ast.Assign) and target.value is call
            and len(target.targets) == 1 and isinstance(target.targets[0], (ast.Tuple,
                                                                             ast.List))):
        return ""
    want = len(target.targets[0].elts)
    if any(isinstance(e, ast.Starred) for e in target.targets[0].elts):
        return ""
    new_returns = [r.value for r in ast.walk(new) if isinstance(r, ast.Return)
                   and _own_return(r, new)]
    if new_returns and all(isinstance(v, ast.Tuple) and len(v.elts) == want
                           for v in new_returns):
        return ""
    old_returns = [r.value for r in ast.walk(old) if isinstance(r, ast.Return)
                   and _own_return(r, old)]
    if old_returns and all(isinstance(v, ast.Tuple) and len(v.elts) == want
                           for v in old_returns):
        return f"unpacks the result into {want} names; the new version returns another shape"
    return ""


def _own_return(r: ast.Return, fn: FuncNode) -> bool:
    """A return of ``fn`` itself, not of a function nested in it."""
    for node in ast.walk(fn):
        if node is not fn and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda)):
            if any(r is x for x in ast.walk(node)):
                return False
    return True


def cross_module_hazards(plans: Dict[str, Tuple[ast.Module, ast.Module]],
                         packages: Dict[str, str], changed_in: Dict[str, Set[str]]
                         ) -> Dict[str, List[CallHazard]]:
    """``call_hazards`` across the modules of one patch: a changed function of module M
    whose old code calls a changed function of module N through ``from N import f`` or
    ``import N`` (``N.f(...)``). ``plans``: module -> (old tree, new tree); ``packages``:
    module -> its ``__package__`` (to resolve relative imports); ``changed_in``: module ->
    qualnames whose code changed (the differ's). Keyed by the caller's module; each
    hazard's callee is "N:f"."""
    funcs = {m: (dict(iter_functions(o.body)), dict(iter_functions(n.body)))
             for m, (o, n) in plans.items()}
    changed = {m: {q for q in changed_in.get(m, set()) if "." not in q
                   and q in funcs[m][0] and q in funcs[m][1]} for m in plans}
    out: Dict[str, List[CallHazard]] = {}
    for m, (old, _new) in plans.items():
        names, modules = _imported(old, packages.get(m, ""))
        for alias, target in _aliases(old).items():   # ``_clean = clean`` of an imported one
            if target in names:
                names[alias] = names[target]
        if not any(src in changed and src != m for src, _ in names.values()) \
                and not any(src in changed and src != m for src in modules.values()):
            continue
        of, nf = funcs[m]
        callers = {q for q in of if "<locals>" not in q
                   and (q not in nf or q in changed_in.get(m, set()))}
        for caller in sorted(callers):
            fn = of[caller]
            shadowed = _locals(fn) | (_params(fn) - {"*"})
            parents = {id(c): p for p in ast.walk(fn) for c in ast.iter_child_nodes(p)}
            for node in ast.walk(fn):
                if not isinstance(node, ast.Call):
                    continue
                src, attr = "", ""
                if isinstance(node.func, ast.Name) and node.func.id in names \
                        and node.func.id not in shadowed:
                    src, attr = names[node.func.id]
                elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value,
                                                                         ast.Name) \
                        and node.func.value.id in modules \
                        and node.func.value.id not in shadowed:
                    src, attr = modules[node.func.value.id], node.func.attr
                if src == m or src not in changed or attr not in changed[src]:
                    continue
                old_callee, new_callee = funcs[src][0][attr], funcs[src][1][attr]
                why = _rejects(node, old_callee, new_callee, False) \
                    or _unpacks(node, parents, old_callee, new_callee)
                if why:
                    out.setdefault(m, []).append(
                        CallHazard(caller, f"{src}:{attr}", getattr(node, "lineno", 0), why))
    return out


def _aliases(tree: ast.Module) -> Dict[str, str]:
    """Module-level ``alias = name`` bindings (``_clean = clean``), chains followed."""
    direct: Dict[str, str] = {}
    for s in tree.body:
        if isinstance(s, ast.Assign) and isinstance(s.value, ast.Name):
            for t in s.targets:
                if isinstance(t, ast.Name) and t.id != s.value.id:
                    direct[t.id] = s.value.id
    out: Dict[str, str] = {}
    for alias, target in direct.items():
        seen = {alias}
        while target in direct and target not in seen:
            seen.add(target)
            target = direct[target]
        out[alias] = target
    return out


def _imported(tree: ast.Module, package: str) -> Tuple[Dict[str, Tuple[str, str]],
                                                       Dict[str, str]]:
    """Module-level ``from X import f [as g]`` (g -> (X, f)) and ``import X [as Y]``
    (Y -> X; ``import a.b`` binds ``a``), relative imports resolved against ``package``."""
    names: Dict[str, Tuple[str, str]] = {}
    modules: Dict[str, str] = {}
    for s in tree.body:
        if isinstance(s, ast.ImportFrom):
            base = s.module or ""
            if s.level:
                parts = package.split(".") if package else []
                if s.level - 1 > len(parts):
                    continue
                head = parts[:len(parts) - (s.level - 1)]
                base = ".".join(head + ([s.module] if s.module else []))
            for a in s.names:
                names[a.asname or a.name] = (base, a.name)
                modules.setdefault(a.asname or a.name, f"{base}.{a.name}")
        elif isinstance(s, ast.Import):
            for a in s.names:
                if a.asname:
                    modules[a.asname] = a.name
                else:
                    modules[a.name.split(".")[0]] = a.name.split(".")[0]
    return names, modules
