"""Scratch evaluation: run the patch's module-level statements without touching the module.

Shared by prepare (first commit) and post (the late statements, evaluated against the
new code after the first commit). Enters: a ``_ModuleTxn``, the live module and a list
of statements from the plan. Leaves: the scratch namespace the statements filled, and
``commit.Op`` appended to the txn (rebinding names, attribute/item assignments deferred
to the commit, registrations, defaults, copies held by importers).
Invariant: statements run in a fresh namespace whose reads fall through to the live
module; writes to live objects are turned into ops (``_deferred_set``), so nothing the
application sees changes before ``commit.run``.

Size: about 550 lines, over the ~500-line rule of thumb: the statement rewriting
(``_ScratchReads``, ``_deferred_set``, ``_split_registrations``) and the evaluation that
depends on it change together; the late split and the defaults could move to a module of
their own.
"""

from __future__ import annotations

import ast
import builtins
import collections
import copy
import gc
import sys
import types
import weakref
from types import CodeType, FunctionType
from typing import AbstractSet, Any, Dict, List, Optional, Set, Tuple

from .._defs import syntax as _syntax
from .. import _codes, _defs
from .commit import MISSING, Call, Op
from ._refgraph import _importers, _resolve_class, _source_tree
from ._state import _ModuleTxn, _evaluation_refused, _own_dict


def _late_split(plan: _defs.ModulePlan, package: str = "", patched: AbstractSet[str] = frozenset(),
                modules: Optional[Dict[str, str]] = None) -> Tuple[List[ast.stmt], List[ast.stmt]]:
    """Statements that call changed code must run after the code swap (second commit).

    So must the part of ``from M import ...`` that imports names ``M`` (another module of
    the same patch) does not have yet: the first commit binds them (gunicorn 22:
    ``http.message`` imports the new ``UnsupportedTransferCoding`` from ``http.errors``).
    Names ``M`` already has are imported early, as other new statements may need them
    (Pygments 2.15.1: a new base class imported in the same statement). And so must a
    statement that reads a name another module of the patch does not have yet through
    that module (``sql.Literal("x")``, where ``modules`` maps the local name ``sql`` to
    the patched module it holds).
    """
    construct = _construct_names(plan)
    # Functions and classes this batch defines have the live module as globals, where the
    # batch's other new names do not exist before the commit (requests 2.32:
    # ``chardet = _resolve_char_detection()`` and its new ``import importlib``).
    batch = {n for s in plan.exec_stmts for n in _syntax.bound_names(s)}
    construct |= {s.name for s in plan.exec_stmts   # type: ignore[attr-defined]
                  if _syntax.stmt_category(s) in ("def", "class")
                  and _syntax._names_in(s.body) & batch}  # type: ignore[attr-defined]
    modules = dict(modules or {})
    for s in plan.exec_stmts:   # modules of the patch that the new statements import
        if isinstance(s, ast.ImportFrom):
            source = _import_source(s, package)
            for a in s.names:
                if f"{source}.{a.name}" in patched:
                    modules[a.asname or a.name] = f"{source}.{a.name}"
        elif isinstance(s, ast.Import):
            for a in s.names:
                if a.asname and a.name in patched:
                    modules[a.asname] = a.name
    early: List[ast.stmt] = []
    late: List[ast.stmt] = []
    late_names: Set[str] = set()
    for s in plan.exec_stmts:
        cat = _syntax.stmt_category(s)
        if isinstance(s, ast.ImportFrom) and _new_names(s, package, patched):
            new = _new_names(s, package, patched)
            for part, names in ((early, [a for a in s.names if a.name not in new]),
                                (late, [a for a in s.names if a.name in new])):
                if names:
                    part.append(ast.copy_location(ast.ImportFrom(
                        module=s.module, names=names, level=s.level), s))
            late_names.update(a.asname or a.name for a in s.names if a.name in new)
        elif (cat in ("assign", "binding-block", "mutation", "class")
              and _reads_new_attribute(s, modules)):
            late.append(s)
            late_names.update(_syntax.bound_names(s))
        elif (cat in ("assign", "binding-block", "mutation")
              and _syntax._called_roots(s) & construct
              or cat in ("assign", "binding-block", "mutation", "class")
              and _syntax._names_in([s]) & late_names):
            late.append(s)   # a statement that builds on a late name runs after it
            late_names.update(_syntax.bound_names(s))
        else:
            early.append(s)
    return early, late


def _reads_new_attribute(stmt: ast.stmt, modules: Dict[str, str]) -> bool:
    """Whether ``stmt`` reads ``alias.NAME`` where ``alias`` holds a module of the patch
    (``modules``: local name -> module name) that has no ``NAME`` yet."""
    for node in ast.walk(stmt):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            source = modules[node.value.id]
            live = _own_dict(sys.modules.get(source)) or {}
            if node.attr not in live and f"{source}.{node.attr}" not in sys.modules:
                return True
    return False


def _import_source(stmt: ast.ImportFrom, package: str) -> str:
    """The absolute module name ``stmt`` imports from ('' if it cannot be resolved)."""
    if not stmt.level:
        return stmt.module or ""
    parts = package.split(".") if package else []
    if stmt.level - 1 > len(parts) or not parts:
        return ""
    base = parts[:len(parts) - (stmt.level - 1)]
    return ".".join(base + ([stmt.module] if stmt.module else []))


def _new_names(stmt: ast.ImportFrom, package: str, patched: AbstractSet[str]) -> Set[str]:
    """Names ``stmt`` imports from another module of the patch that it does not have yet."""
    source = _import_source(stmt, package)
    if source not in patched:
        return set()
    live = _own_dict(sys.modules.get(source)) or {}
    return {a.name for a in stmt.names if a.name != "*" and a.name not in live
            and f"{source}.{a.name}" not in sys.modules}


def _construct_names(plan: _defs.ModulePlan) -> Set[str]:
    out: Set[str] = set()
    for c in plan.changes:
        if not c.kind.startswith(("changed function", "changed method", "changed default",
                                  "re-evaluated default", "regenerated",
                                  "changed class bases", "changed decorator")):
            continue
        head, _, tail = c.qualname.partition(".")
        if not tail or tail in ("__init__", "__new__", "__post_init__", "__call__") \
                or c.kind == "changed class bases":
            out.add(head)
    return out


def _compile_stmts(stmts: List[ast.stmt], plan: _defs.ModulePlan, filename: str) -> CodeType:
    tree = ast.Module(body=list(plan.future_flags) + stmts, type_ignores=[])
    return compile(tree, filename, "exec", dont_inherit=True)


def _lazy_imports(stmts: List[ast.stmt], channel: str) -> Tuple[List[ast.stmt], Set[str]]:
    """``lazy import ...`` (3.15+, PEP 810) as ``names = channel(source, names)``: the
    scratch namespace is not module level, where such a statement must run (a
    SyntaxError at run time otherwise); ``_exec_stmts``' channel runs it there."""
    out: List[ast.stmt] = []
    names: Set[str] = set()
    for s in stmts:
        if not getattr(s, "is_lazy", 0):
            out.append(s)
            continue
        bound = tuple(_syntax.bound_names(s))
        names.update(bound)
        call = ast.Call(func=ast.Name(id=channel, ctx=ast.Load()),
                        args=[ast.Constant(ast.unparse(s)),
                              ast.Tuple(elts=[ast.Constant(n) for n in bound], ctx=ast.Load())],
                        keywords=[])
        target = ast.Tuple(elts=[ast.Name(id=n, ctx=ast.Store()) for n in bound],
                           ctx=ast.Store())
        out.append(ast.fix_missing_locations(ast.copy_location(
            ast.Assign(targets=[target], value=call), s)))
    return out, names


def _exec_stmts(txn: _ModuleTxn, module: types.ModuleType,
               stmts: List[ast.stmt]) -> Dict[str, Any]:
    """Evaluate new and changed module-level statements into a scratch namespace.

    ``exec(code, module.__dict__, ns)`` gives class-body semantics: names are
    read from ``ns`` then the module then builtins, writes go to ``ns`` only,
    and functions defined here get the live module dict as their globals.
    Scopes nested in these statements (class bodies, comprehensions) read the
    module, not ``ns``: ``_ScratchReads`` points their reads of names bound
    earlier in the batch at ``ns`` (gunicorn 22's new ``HeaderMap`` setting class
    reads the new ``validate_header_map_behaviour`` function).
    """
    ns: Dict[str, Any] = {}
    if not stmts:
        return ns
    assert txn.plan is not None
    stmts, registrations = _split_registrations(stmts, module)
    lazy_channel = f"__suture_lazy_{id(ns):x}__"
    stmts, lazy_names = _lazy_imports(stmts, lazy_channel)
    channel = f"__suture_scratch_{id(ns):x}__"
    stmts = _ScratchReads.rewrite(stmts, channel)
    setter = f"__suture_set_{id(ns):x}__"
    stmts = [_deferred_set(s, setter) for s in stmts]
    code = _compile_stmts(stmts, txn.plan, txn.filename)
    # An import binds an object ``sys.modules`` already shares: the batch did not make it.
    imported = {n for s in stmts if _syntax.stmt_category(s) == "import"
                for n in _syntax.bound_names(s)} | lazy_names

    def lazy_import(source: str, names: Tuple[str, ...]) -> Tuple[Any, ...]:
        # PEP 810 allows ``lazy import`` only at module level, where globals are locals:
        # run it so, in a namespace of its own that names this module as the importer
        # (relative imports, the lazy-imports filter), and hand its proxies, unloaded,
        # to the scratch namespace. A proxy loads its module when read as a global of
        # the live module, wherever it was made.
        d = module.__dict__
        tmp: Dict[str, Any] = {k: d[k] for k in ("__name__", "__package__", "__spec__", "__path__",
                                 "__file__", "__builtins__") if k in d}
        exec(compile(source, txn.filename, "exec", dont_inherit=True), tmp)
        return tuple(tmp[n] for n in names)

    def set_at_commit(root: str, obj: Any, key: str, value: Any, item: bool) -> None:
        if root in ns and root not in imported:   # made by this batch: unseen elsewhere
            obj.__setitem__(key, value) if item else setattr(obj, key, value)
        elif item and type(obj) is not dict:
            raise TypeError(f"{root}[...] is not a plain dict; setting an item in it "
                            "cannot be undone")
        else:
            txn.ops.append(Op("item" if item else "attr", obj, key, value,
                              f"{txn.name}: {root}{f'[{key!r}]' if item else f'.{key}'}"))
    setattr(builtins, channel, ns)
    setattr(builtins, setter, set_at_commit)
    setattr(builtins, lazy_channel, lazy_import)
    try:
        exec(code, module.__dict__, ns)
        for name, dispatcher, type_expr in registrations:
            func = ns[name]
            if type_expr is not None:
                expr = ast.Expression(body=type_expr)
                ast.fix_missing_locations(expr)
                cls = eval(compile(expr, txn.filename, "eval", dont_inherit=True),
                           module.__dict__, ns)
            else:
                first = func.__code__.co_varnames[0]
                cls = func.__annotations__[first]
                if isinstance(cls, str):
                    cls = eval(cls, module.__dict__, ns)
            txn.ops.extend(_register_op(dispatcher, cls, func, f"{txn.name}.{name}"))
    except Exception as exc:
        raise _evaluation_refused(exc, f"evaluating the new definitions of {txn.name}",
                                  {"module": txn.name}) from exc
    finally:
        delattr(builtins, channel)
        delattr(builtins, setter)
        delattr(builtins, lazy_channel)
    return ns


def _deferred_set(stmt: ast.stmt, setter: str) -> ast.stmt:
    """``X.a = v`` / ``X[k] = v`` at module level -> ``setter('X', X, 'a', v, False)``.

    Preparing must not change live objects (the patch may still be refused): the setter
    makes the assignment an op of the commit, undone by revert, unless ``X`` is an
    object this batch created.
    """
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and _syntax.stmt_category(stmt) == "mutation"):
        return stmt
    t = stmt.targets[0]
    if isinstance(t, ast.Attribute):
        key: ast.expr = ast.Constant(t.attr)
    elif isinstance(t, ast.Subscript) and not isinstance(t.slice, ast.Slice):
        key = t.slice
        if sys.version_info < (3, 9) and isinstance(key, ast.Index):  # pragma: no cover
            key = key.value  # type: ignore[attr-defined]
    else:
        return stmt
    obj = copy.deepcopy(t.value)
    for node in ast.walk(obj):
        if isinstance(getattr(node, "ctx", None), ast.Store):
            node.ctx = ast.Load()  # type: ignore[attr-defined]
    call = ast.Call(func=ast.Name(setter, ast.Load()),
                    args=[ast.Constant(_syntax._root(t)), obj, key, stmt.value,
                          ast.Constant(isinstance(t, ast.Subscript))], keywords=[])
    return ast.fix_missing_locations(ast.copy_location(ast.Expr(call), stmt))


# Built-ins that consume an iterable they are handed before returning, and lazy ones
# whose generators and functions then run as they are consumed.
_LAZY = frozenset(("filter", "map", "zip", "reversed", "enumerate", "iter"))
_EAGER = frozenset(("frozenset", "set", "tuple", "list", "dict", "sorted", "any", "all", "sum",
                    "min", "max"))


class _ScratchReads(ast.NodeTransformer):
    """Rewrite reads of ``names`` in scopes evaluated during the batch to ``channel[name]``.

    ``channel`` is a builtin that exists only while the batch runs (a unique name no
    application code uses), bound to the scratch namespace. Class bodies and eager
    comprehensions run during the batch, so they are rewritten; function and lambda
    bodies run later, after the commit has bound the names in the module, so they are
    not (their decorators, defaults and annotations are, being evaluated now).
    """

    def __init__(self, names: Set[str], channel: str) -> None:
        self.names = names
        self.channel = channel

    @classmethod
    def rewrite(cls, stmts: List[ast.stmt], channel: str) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        bound: Set[str] = set()
        for stmt in stmts:
            if bound and any(isinstance(n, (ast.ClassDef, ast.ListComp, ast.SetComp,
                                            ast.DictComp, ast.GeneratorExp, ast.Lambda))
                             for n in ast.walk(stmt)):
                stmt = ast.fix_missing_locations(
                    cls(set(bound), channel).visit(copy.deepcopy(stmt)))
            out.append(stmt)
            bound.update(_syntax.bound_names(stmt))
        return out

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.names:
            return ast.copy_location(ast.Subscript(
                value=ast.Name(id=self.channel, ctx=ast.Load()),
                slice=ast.Constant(value=node.id), ctx=ast.Load()), node)
        return node

    def visit_FunctionDef(self, node: Any) -> Any:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        if node.returns is not None:
            node.returns = self.visit(node.returns)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        node.args = self.visit(node.args)
        return node

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        return node  # may run after the batch (its first iterable reads ns anyway)

    def visit_Call(self, node: ast.Call) -> Any:
        """A generator handed straight to a built-in that consumes it at once
        (``frozenset(s for s in NEW)``, ``", ".join(...)``), and a ``key=`` lambda of
        ``sorted``/``min``/``max``, run during the batch: their reads are rewritten too.
        Anywhere else they may run after it, when the names are bound in the module."""
        func = node.func
        eager = (isinstance(func, ast.Name) and func.id in _EAGER) or (
            isinstance(func, ast.Attribute) and func.attr == "join")
        node.func = self.visit(func)
        node.args = [self._consumed(a) if eager else self.visit(a) for a in node.args]
        keywords = []
        for k in node.keywords:
            if (isinstance(func, ast.Name) and func.id in ("sorted", "min", "max")
                    and k.arg == "key" and isinstance(k.value, ast.Lambda)):
                k.value = self._consumed(k.value)
                keywords.append(k)
            else:
                keywords.append(self.visit(k))
        node.keywords = keywords
        return node

    def _consumed(self, node: ast.expr) -> ast.expr:
        """An argument that an eager built-in consumes now: a generator, or a lazy built-in
        (``filter``, ``map``...) over generators and lambdas, all run during the batch."""
        if isinstance(node, ast.GeneratorExp):
            node.elt = self.visit(node.elt)
            node.generators = [self.visit(g) for g in node.generators]
            return node
        if isinstance(node, ast.Lambda):
            node.args = self.visit(node.args)
            node.body = self._inner({a.arg for a in ast.walk(node.args)
                                     if isinstance(a, ast.arg)}).visit(node.body)
            return node
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _LAZY and not node.keywords):
            node.args = [self._consumed(a) for a in node.args]
            return node
        out: ast.expr = self.visit(node)
        return out

    def _inner(self, bound: Set[str]) -> "_ScratchReads":
        return type(self)(self.names - bound, self.channel)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        # A name the class body binds itself is read from the class namespace first.
        inner = self._inner({n for st in node.body for n in _syntax.bound_names(st)})
        node.body = [inner.visit(st) for st in node.body]
        return node

    def _comprehension(self, node: Any) -> Any:
        targets = {n.id for g in node.generators for n in ast.walk(g.target)
                   if isinstance(n, ast.Name)}
        return self._inner(targets).generic_visit(node)

    visit_ListComp = visit_SetComp = visit_DictComp = _comprehension


def _split_registrations(stmts: List[ast.stmt], module: types.ModuleType
                         ) -> Tuple[List[ast.stmt], List[Tuple[str, Any, Optional[ast.expr]]]]:
    """Take ``@dispatcher.register`` off new functions so that registering is an op.

    Running the decorator while preparing would register the implementation
    before the commit (and for good, even if the patch is then refused).
    Instead the registry entry becomes an undoable op, committed atomically.
    Only the outermost decorator is taken off: ``register`` returns the
    function it got, so nothing else changes.
    """
    out: List[ast.stmt] = []
    regs: List[Tuple[str, Any, Optional[ast.expr]]] = []
    for s in stmts:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.decorator_list:
            d = s.decorator_list[0]
            call = d if isinstance(d, ast.Call) else None
            target = call.func if call is not None else d
            if (isinstance(target, ast.Attribute) and target.attr == "register"
                    and isinstance(target.value, ast.Name)):
                dispatcher = module.__dict__.get(target.value.id)
                if _is_singledispatch(dispatcher) and (call is None or len(call.args) == 1):
                    node = copy.copy(s)
                    node.decorator_list = s.decorator_list[1:]
                    if not node.decorator_list:
                        # A decorated function's code starts at its first decorator: keep
                        # the line a fresh import gives it (engine/verify compares it).
                        node.lineno = d.lineno
                    out.append(node)
                    regs.append((s.name, dispatcher, call.args[0] if call else None))
                    continue
        out.append(s)
    return out, regs


def _is_singledispatch(obj: Any) -> bool:
    """functools.singledispatch's wrapper: a function carrying registry and dispatch."""
    d = _own_dict(obj) if type(obj) is FunctionType else None
    return d is not None and "registry" in d and type(d.get("dispatch")) is FunctionType \
        and d["dispatch"].__closure__ is not None


def _register_op(dispatcher: Any, cls: Any, func: Any, label: str) -> List[Any]:
    registry = next(r for r in gc.get_referents(dispatcher.registry) if isinstance(r, dict))
    caches = [c.cell_contents for c in dispatcher.dispatch.__closure__
              if isinstance(c.cell_contents, weakref.WeakKeyDictionary)]
    return [Op("item", registry, cls, func, f"register {label}")] + [
        Call(c.clear, f"clear dispatch cache for {label}") for c in caches]


def _bind_module(txn: _ModuleTxn, module: types.ModuleType, plan: _defs.ModulePlan,
                 ns: Dict[str, Any], late: bool) -> None:
    d = module.__dict__
    rebound: Dict[str, Any] = {}
    for name in plan.bind:
        if name in ns:
            old = d.get(name, MISSING)
            txn.ops.append(Op("item", d, name, ns[name], f"{txn.name}.{name}"))
            if old is not MISSING and old is not ns[name]:
                rebound[name] = old
                txn.watch.append((f"{txn.name}.{name}", old))
    if not late:
        for name in plan.delete:
            if name in d:
                txn.ops.append(Op("item", d, name, MISSING, f"del {txn.name}.{name}"))
                rebound[name] = d[name]
    copies = [(d_, alias, name) for d_, alias, name in _importers(txn.name, rebound) if name in ns]
    for alias_dict, alias, name in copies:
        txn.ops.append(Op("item", alias_dict, alias, ns[name], f"copy of {txn.name}.{name}"))
    if not late:
        _propagate(txn, [(d_, alias, ns[name]) for d_, alias, name in copies])


def _defaults(txn: _ModuleTxn, module: types.ModuleType, wanted: List[str],
              ns: Dict[str, Any], quals: Dict[int, str]) -> None:
    """Evaluate the fixed defaults of top-level functions and methods named in ``wanted``."""
    if not wanted:
        return
    assert txn.fixed_tree is not None
    nodes = dict(_syntax.iter_functions(txn.fixed_tree.body))
    for f in txn.swapped:
        q = quals.get(id(f.__code__))
        if q not in wanted:
            continue
        owner = _resolve_class(module, q.rsplit(".", 1)[0]) if "." in q else None
        pending = {op.key: op.new for op in txn.ops
                   if owner is not None and op.kind == "attr" and op.obj is owner}
        defaults, kwdefaults = _eval_defaults(module, q, nodes[q], ns, txn.filename, pending)
        target = txn.forwarded.get(id(f))
        if target is not None:  # not live yet: set it directly, the old object forwards to it
            target.__defaults__ = defaults or None
            target.__kwdefaults__ = kwdefaults or None
            continue
        txn.ops.append(Op("attr", f, "__defaults__", defaults or None, f"{txn.name}:{q} defaults"))
        txn.ops.append(Op("attr", f, "__kwdefaults__", kwdefaults or None,
                          f"{txn.name}:{q} kwdefaults"))


def _eval_defaults(module: types.ModuleType, q: str, node: _syntax.FuncNode,
                   ns: Dict[str, Any], filename: str,
                   pending: Optional[Dict[str, Any]] = None) -> Tuple[Any, Any]:
    """Evaluate a def's default expressions as its module (or class body) would.

    ``pending``: the class attributes this patch is about to set on the owner class.
    """
    owner = _resolve_class(module, q.rsplit(".", 1)[0]) if "." in q else None
    # a class body reads its own namespace first, then the module's
    scope = collections.ChainMap({k: v for k, v in (pending or {}).items() if v is not MISSING},
                                 dict(vars(owner)) if owner else {}, ns)
    a = node.args
    defaults_expr = ast.Expression(body=ast.Tuple(elts=list(a.defaults), ctx=ast.Load()))
    kw = [(arg.arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    kw_expr = ast.Expression(body=ast.Dict(keys=[ast.Constant(k) for k, _ in kw],
                                           values=[d for _, d in kw]))
    for e in (defaults_expr, kw_expr):
        ast.fix_missing_locations(e)
    try:
        defaults = eval(compile(defaults_expr, filename, "eval", dont_inherit=True),
                        module.__dict__, scope)
        kwdefaults = eval(compile(kw_expr, filename, "eval", dont_inherit=True),
                          module.__dict__, scope)
    except Exception as exc:
        raise _evaluation_refused(exc, f"evaluating the new defaults of {module.__name__}:{q}",
                                  {"module": module.__name__, "function": q}) from exc
    return defaults or None, kwdefaults or None


def _propagate(txn: _ModuleTxn, copies: List[Tuple[Dict[str, Any], str, Any]],
               depth: int = 3) -> None:
    """Modules that imported a rebound constant recompute what they derived from it.

    ``uploads`` did ``from limits import MAX_UPLOAD`` and, at import,
    ``HARD_CAP = MAX_UPLOAD * 2`` and ``def accept(size, cap=MAX_UPLOAD)``.
    The copy of MAX_UPLOAD is rebound (``_importers``); here the derived
    assignments run again from the module's own source (its real file name and
    lines), defaults and class attributes that read them are evaluated again,
    and what they rebind propagates in turn, ``depth`` modules deep.
    """
    by_dict: Dict[int, Tuple[types.ModuleType, Dict[str, Any]]] = {}
    for d, alias, value in copies:
        mod = next((m for m in list(sys.modules.values()) if _own_dict(m) is d), None)
        if mod is not None:
            by_dict.setdefault(id(d), (mod, {}))[1][alias] = value
    for mod, changed in by_dict.values():
        # a module of this patch is read from its fixed source, any other from its loader
        fixed = txn.sources.get(mod.__name__)
        tree = ast.parse(fixed) if fixed is not None else _source_tree(mod)
        if tree is None:
            continue
        dep = _defs.dependents(tree, set(changed))
        if not (dep.stmts or dep.defaults or dep.class_attrs):
            continue
        filename = getattr(mod, "__file__", None) or f"<{mod.__name__}>"
        ns: Dict[str, Any] = dict(changed)
        d = mod.__dict__
        try:
            if dep.stmts:
                exec(compile(ast.Module(body=dep.stmts, type_ignores=[]), filename, "exec",
                             dont_inherit=True), d, ns)
            for q, stmt in dep.class_attrs:
                cls = _resolve_class(mod, q)
                targets = getattr(stmt, "targets", [getattr(stmt, "target", None)])
                if cls is None or len(targets) != 1 or not isinstance(targets[0], ast.Name):
                    continue
                expr = ast.Expression(body=stmt.value)  # type: ignore[attr-defined]
                value = eval(compile(expr, filename, "eval", dont_inherit=True), d,
                             collections.ChainMap(ns, dict(vars(cls))))
                txn.ops.append(Op("attr", cls, targets[0].id, value,
                                  f"{mod.__name__}:{q}.{targets[0].id} (from {txn.name})"))
        except Exception as exc:
            raise _evaluation_refused(
                exc, f"recomputing what {mod.__name__} derived from {txn.name}",
                {"module": mod.__name__}) from exc
        rebound: Dict[str, Any] = {}
        for name in sorted(dep.names):
            old = d.get(name, MISSING)
            if name in ns and old is not ns[name]:
                txn.ops.append(Op("item", d, name, ns[name],
                                  f"{mod.__name__}.{name} (from {txn.name})"))
                if old is not MISSING:
                    rebound[name] = old
                    txn.watch.append((f"{mod.__name__}.{name}", old))
        funcs = {id(f.__code__): f for f in gc.get_referrers(d) if type(f) is FunctionType}
        quals = _codes.live_qualnames(list(funcs.values()))
        wanted = dict(dep.defaults)
        for code_id, q in quals.items():
            f = funcs.get(code_id)
            if f is None or q not in wanted:
                continue
            defaults, kwdefaults = _eval_defaults(mod, q, wanted[q], ns, filename)
            txn.ops.append(Op("attr", f, "__defaults__", defaults,
                              f"{mod.__name__}:{q} defaults (from {txn.name})"))
            txn.ops.append(Op("attr", f, "__kwdefaults__", kwdefaults,
                              f"{mod.__name__}:{q} kwdefaults (from {txn.name})"))
        if depth > 0 and rebound:
            further = _importers(mod.__name__, rebound)
            for alias_dict, alias, name in further:
                txn.ops.append(Op("item", alias_dict, alias, ns[name],
                                  f"copy of {mod.__name__}.{name}"))
            _propagate(txn, [(ad, a, ns[n]) for ad, a, n in further], depth - 1)
