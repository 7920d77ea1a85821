"""Definition-level diff of two versions of one module: the single source of truth.

The builder (tooling) calls ``diff_module`` to classify changes and write the
report; the engine calls the same function on the patch's own baseline and
fixed sources at apply time to decide what to execute and rebind. Both halves
therefore agree by construction, and a patch cannot smuggle in an action the
sources do not justify.

Only ``ast`` is used here, never ``compile``/``exec``: nothing in this module
runs patch code.

Verdicts, from best to worst:
  live     patchable as is
  caveat   patchable, with a stated limit (the reason says which)
  hook     needs a human-written hook (``suture build --hooks``)
  restart  cannot be applied to live objects; a restart is required
"""

from __future__ import annotations

import ast
import copy as copy_module
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

FuncNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]
DefNode = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]

_LAYOUT_BUILTINS = {"int", "str", "bytes", "tuple", "list", "dict", "set", "frozenset",
                    "float", "complex", "bytearray", "BaseException", "Exception"}
_FIELD_DECORATORS = {"dataclass", "define", "frozen", "mutable", "s", "attrs", "attrib"}
_ENUM_HINTS = ("Enum", "Flag")
_FIELD_BASES = {"NamedTuple", "TypedDict"}


@dataclass(frozen=True)
class Change:
    kind: str
    qualname: str
    verdict: str
    reason: str = ""


@dataclass
class ClassPlan:
    """What the engine does to one live class besides swapping code."""
    qualname: str
    exec_members: List[ast.stmt] = field(default_factory=list)   # run in an isolated body
    bind: List[str] = field(default_factory=list)                # names taken from that body
    delete: List[str] = field(default_factory=list)
    new_bases: Optional[List[ast.expr]] = None
    regenerate: bool = False    # a stdlib @dataclass whose fields change (_plain_dataclass)


@dataclass
class ModulePlan:
    changes: List[Change] = field(default_factory=list)
    exec_stmts: List[ast.stmt] = field(default_factory=list)     # module-level, source order
    bind: List[str] = field(default_factory=list)
    delete: List[str] = field(default_factory=list)
    classes: List[ClassPlan] = field(default_factory=list)
    recompute_defaults: List[str] = field(default_factory=list)  # qualnames
    future_flags: List[ast.stmt] = field(default_factory=list)
    old_tree: Optional[ast.Module] = None   # parsed once; the engine compiles from these
    new_tree: Optional[ast.Module] = None

    @property
    def worst(self) -> str:
        order = ["live", "caveat", "hook", "restart"]
        return max((c.verdict for c in self.changes), key=order.index, default="live")


def dump(node: Optional[ast.AST]) -> str:
    return "" if node is None else ast.dump(node, include_attributes=False)


def dumps(nodes: Iterable[Optional[ast.AST]]) -> str:
    return "|".join(dump(n) for n in nodes)


# -- indexing ----------------------------------------------------------------

def _is_def(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def bound_names(stmt: ast.stmt) -> List[str]:
    """Names a module- or class-level statement binds in its namespace."""
    out: List[str] = []
    if _is_def(stmt):
        out.append(stmt.name)  # type: ignore[attr-defined]
    elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for a in stmt.names:
            if a.name == "*":
                continue
            out.append(a.asname or a.name.split(".")[0])
    elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        for t in targets:
            out.extend(_target_names(t))
    elif isinstance(stmt, (ast.If, ast.Try)):
        for child in _block_children(stmt):
            out.extend(bound_names(child))
    return out


def _target_names(t: ast.expr) -> List[str]:
    if isinstance(t, ast.Name):
        return [t.id]
    if isinstance(t, (ast.Tuple, ast.List)):
        return [n for e in t.elts for n in _target_names(e)]
    if isinstance(t, ast.Starred):
        return _target_names(t.value)
    return []


def _simple_target(t: ast.expr) -> bool:
    if isinstance(t, ast.Name):
        return True
    if isinstance(t, (ast.Tuple, ast.List)):
        return all(_simple_target(e) for e in t.elts)
    if isinstance(t, ast.Starred):
        return _simple_target(t.value)
    return False


def _block_children(stmt: ast.stmt) -> Iterator[ast.stmt]:
    if isinstance(stmt, ast.If):
        yield from stmt.body
        yield from stmt.orelse
    elif isinstance(stmt, ast.Try):
        yield from stmt.body
        for h in stmt.handlers:
            yield from h.body
        yield from stmt.orelse
        yield from stmt.finalbody


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def stmt_category(stmt: ast.stmt) -> str:
    """def | class | import | assign | binding-block | docstring | future | mutation | other."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "def"
    if isinstance(stmt, ast.ClassDef):
        return "class"
    if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
        return "future"
    if isinstance(stmt, (ast.Import, ast.ImportFrom)) or _import_call(stmt):
        return "import"
    if isinstance(stmt, ast.Assign) and all(_simple_target(t) for t in stmt.targets):
        return "assign"
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return "assign" if stmt.value is not None else "annotation"
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        return "assign"
    if _is_docstring(stmt):
        return "docstring"
    if isinstance(stmt, (ast.If, ast.Try)) and all(
            stmt_category(c) in _BLOCK_CONTENT or isinstance(c, ast.Raise)
            for c in _block_children(stmt)):
        return "binding-block"
    if isinstance(stmt, ast.Pass):
        return "pass"
    if mutated_root(stmt):
        return "mutation"
    return "other"


def _annotated_only(old: Optional[ast.stmt], new: ast.stmt) -> bool:
    """``X = v`` -> ``X: T = v`` (or the reverse, or T changed) at module level: the
    annotation is only recorded in ``__annotations__``; the binding is the same."""
    def parts(st: Optional[ast.stmt]) -> Optional[str]:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 \
                and isinstance(st.targets[0], ast.Name):
            return st.targets[0].id + "=" + dump(st.value)
        if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) \
                and st.value is not None:
            return st.target.id + "=" + dump(st.value)
        return None
    return old is not None and parts(old) is not None and parts(old) == parts(new)


def _import_call(stmt: ast.stmt) -> bool:
    """``__import__("a.b")`` or ``importlib.import_module("a.b")`` as a statement."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    call = stmt.value
    f = call.func
    named = (isinstance(f, ast.Name) and f.id == "__import__"
             or isinstance(f, ast.Attribute) and f.attr == "import_module"
             and isinstance(f.value, ast.Name) and f.value.id == "importlib")
    return (named and len(call.args) == 1 and not call.keywords
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str))


# What an if/try block may hold and still only bind names (at any depth).
_BLOCK_CONTENT = ("import", "assign", "docstring", "pass", "annotation", "binding-block",
                  "def", "class")


def _root(expr: ast.expr) -> str:
    while isinstance(expr, (ast.Attribute, ast.Subscript)):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else ""


def mutated_root(stmt: ast.stmt) -> str:
    """``X`` for a statement that changes the object bound to ``X`` in place.

    ``X.method(...)``, ``X.attr = v``, ``X[k] = v`` (also nested: ``X.a[k] = v``).
    """
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
            and isinstance(stmt.value.func, ast.Attribute):
        return _root(stmt.value.func)
    if isinstance(stmt, ast.Assign) and all(isinstance(t, (ast.Attribute, ast.Subscript))
                                            for t in stmt.targets):
        roots = {_root(t) for t in stmt.targets}
        return roots.pop() if len(roots) == 1 else ""
    return ""


def touched_names(stmt: ast.stmt) -> Set[str]:
    """Names a statement binds or changes the object of (in blocks, at any depth)."""
    out = set(bound_names(stmt))
    root = mutated_root(stmt)
    if root:
        out.add(root)
    for child in _block_children(stmt):
        out |= touched_names(child)
    return out


def _in_place(stmt: ast.stmt, name: str) -> bool:
    """Does ``stmt`` build on the object already bound to ``name`` (``+=``, ``.append``)?"""
    if isinstance(stmt, ast.AugAssign):
        return _root(stmt.target) == name
    if mutated_root(stmt) == name:
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None \
            and name in bound_names(stmt):
        return name in _names_in([stmt.value])
    return any(_in_place(c, name) for c in _block_children(stmt))


_FRESH_CALLS = {"list", "dict", "set", "frozenset", "tuple", "bytearray", "object"}


def _fresh(stmt: ast.stmt, name: str) -> bool:
    """Does ``stmt`` bind ``name`` to an object made right there (a display, a def)?"""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    value = getattr(stmt, "value", None)
    if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or value is None \
            or name not in bound_names(stmt) or name in _names_in([value]):
        return False
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.Tuple, ast.ListComp, ast.DictComp,
                          ast.SetComp, ast.Constant, ast.JoinedStr)):
        return True
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in _FRESH_CALLS)


def normal_form(stmt: ast.stmt) -> str:
    """``_shape`` with the variables of ``for`` loops renamed by position.

    ``for name in [...]: locals()[name] = f(name)`` and the same loop over ``__name`` do the
    same (setuptools 70's sandbox); only the leftover loop variable differs.
    """
    loops = [n for n in ast.walk(stmt) if isinstance(n, (ast.For, ast.AsyncFor))]
    if not loops:
        return _shape(stmt)
    renames: Dict[str, str] = {}
    for loop in loops:
        for name in _target_names(loop.target):
            renames.setdefault(name, f"__loop{len(renames)}__")
    copy = copy_module.deepcopy(stmt)
    for node in ast.walk(copy):
        if isinstance(node, ast.Name) and node.id in renames:
            node.id = renames[node.id]
    return _shape(copy)


def _shape(stmt: ast.stmt) -> str:
    """``dump`` with function bodies left out: they are swapped in place, not re-run."""
    copy = copy_module.deepcopy(stmt)
    for node in ast.walk(copy):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Pass()]
    return dump(copy)


def _keyed(stmts: List[ast.stmt]) -> Dict[str, ast.stmt]:
    """Key module/class statements so two versions can be matched.

    defs and classes by name; imports and assignments by the names they bind
    (with an occurrence counter, since ``X = 1`` ... ``X += 1`` is legal); other
    statements by their text, so reordering alone is not a change.
    """
    out: Dict[str, ast.stmt] = {}
    counts: Dict[str, int] = {}
    for s in stmts:
        if is_overload(s):
            continue   # typing-only; the definition after it is the one bound
        cat = stmt_category(s)
        if cat in ("def", "class"):
            base = f"{cat}:{s.name}"  # type: ignore[attr-defined]
        elif cat in ("import", "assign", "annotation", "binding-block"):
            base = f"{cat}:{','.join(bound_names(s)) or dump(s)}"
        elif cat == "docstring":
            base = "docstring"
        else:
            base = f"{cat}:{normal_form(s)}"
        n = counts.get(base, 0)
        counts[base] = n + 1
        out[base if n == 0 else f"{base}#{n}"] = s
    return out


def is_overload(stmt: ast.stmt) -> bool:
    """A ``@typing.overload`` stub: typing-only, replaced by the definition after it."""
    if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for d in stmt.decorator_list:
        if isinstance(d, ast.Name) and d.id == "overload" \
                or isinstance(d, ast.Attribute) and d.attr == "overload":
            return True
    return False


def iter_functions(body: List[ast.stmt], prefix: str = "", overloads: bool = False
                   ) -> Iterator[Tuple[str, FuncNode]]:
    """Every function definition with its qualname, nested ones included.

    ``@overload`` stubs are left out unless ``overloads``: at run time the name is bound
    to the real definition that follows them.
    """
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if is_overload(stmt) and not overloads:
                continue
            q = prefix + stmt.name
            yield q, stmt
            yield from iter_functions(stmt.body, q + ".<locals>.", overloads)
        elif isinstance(stmt, ast.ClassDef):
            yield from iter_functions(stmt.body, prefix + stmt.name + ".", overloads)
        elif isinstance(stmt, (ast.If, ast.Try, ast.For, ast.While, ast.With,
                               ast.AsyncFor, ast.AsyncWith)):
            for child_body in _sub_bodies(stmt):
                yield from iter_functions(child_body, prefix, overloads)


def _sub_bodies(stmt: ast.stmt) -> Iterator[List[ast.stmt]]:
    for name in ("body", "orelse", "finalbody"):
        b = getattr(stmt, name, None)
        if b:
            yield b
    for h in getattr(stmt, "handlers", ()):
        yield h.body


def iter_classes(body: List[ast.stmt], prefix: str = "") -> Iterator[Tuple[str, ast.ClassDef]]:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            q = prefix + stmt.name
            yield q, stmt
            yield from iter_classes(stmt.body, q + ".")


def _signature_dump(fn: FuncNode) -> str:
    a = fn.args
    return dumps([*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg])


def _defaults_dump(fn: FuncNode) -> str:
    return dumps([*fn.args.defaults, *fn.args.kw_defaults])


def _body_dump(fn: FuncNode) -> str:
    return dumps(fn.body) + "|" + _signature_dump(fn) + "|" + dump(fn.returns) + type(fn).__name__


def _names_in(nodes: Iterable[Optional[ast.AST]]) -> Set[str]:
    out: Set[str] = set()
    for n in nodes:
        if n is None:
            continue
        for sub in ast.walk(n):
            if isinstance(sub, ast.Name):
                out.add(sub.id)
    return out


def _called_roots(node: ast.AST) -> Set[str]:
    """Root names of everything called in ``node`` (``Policy(3)`` -> Policy, ``a.b()`` -> a)."""
    out: Set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            while isinstance(f, ast.Attribute):
                f = f.value
            if isinstance(f, ast.Name):
                out.add(f.id)
    return out


def _uses_class_cell(fn: FuncNode) -> bool:
    """Does the method (or a function nested in it) need the ``__class__`` cell?"""
    return any(isinstance(n, ast.Name) and n.id in ("super", "__class__") for n in ast.walk(fn))


def _self_attrs(fn: FuncNode) -> Set[str]:
    """Attributes assigned on the first argument (``self.x = ...``)."""
    if not fn.args.args:
        return set()
    me = fn.args.args[0].arg
    out = set()
    for sub in ast.walk(fn):
        targets: List[ast.expr] = []
        if isinstance(sub, ast.Assign):
            targets = sub.targets
        elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)):
            targets = [sub.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                out.add(t.attr)
    return out


def _decorator_names(cls: ast.ClassDef) -> Set[str]:
    out = set()
    for d in cls.decorator_list:
        if isinstance(d, ast.Call):
            d = d.func
        if isinstance(d, ast.Attribute):
            out.add(d.attr)
        elif isinstance(d, ast.Name):
            out.add(d.id)
    return out


def _base_names(cls: ast.ClassDef) -> Set[str]:
    out = set()
    for b in cls.bases:
        if isinstance(b, ast.Attribute):
            out.add(b.attr)
        elif isinstance(b, ast.Name):
            out.add(b.id)
    return out


def _class_kind(cls: ast.ClassDef) -> str:
    if any(n.endswith(h) for n in _base_names(cls) for h in _ENUM_HINTS):
        return "enum"
    if _decorator_names(cls) & _FIELD_DECORATORS:
        return "fields"
    if _base_names(cls) & _FIELD_BASES:
        return "fields"
    return "plain"


_TYPING = ("typing", "typing_extensions")
_ATTRS = ("attr", "attrs")
# Annotations that decide whether a name is a field at all, or how it is passed.
_FIELD_MARKERS = ("ClassVar", "InitVar", "KW_ONLY", "Required", "NotRequired", "ReadOnly")


def _origin(expr: ast.expr, imports: Dict[str, str]) -> str:
    """'module.name' for a Name/Attribute bound by a plain import, else ''."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    if isinstance(expr, ast.Name):
        src = imports.get(expr.id, "")
        if src.startswith("from ") and src.endswith(f" import {expr.id}"):
            return f"{src[5:].split(' import ')[0]}.{expr.id}"
        return ""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        src = imports.get(expr.value.id, "")
        return f"{src[7:]}.{expr.attr}" if src.startswith("import ") else ""
    return ""


def _annotations_are_metadata(cls: ast.ClassDef, imports: Dict[str, str]) -> bool:
    """Is every field-making decorator/base of ``cls`` one that only records annotations?

    The standard library's dataclasses, typing's NamedTuple/TypedDict and attrs never act
    on an annotation's value (beyond the markers in ``_FIELD_MARKERS``); other field
    libraries (pydantic's dataclasses, for one) validate by it, so they do not count.
    """
    known = {"dataclasses.dataclass"} | {f"{m}.{n}" for m in _TYPING
                                         for n in ("NamedTuple", "TypedDict")} \
        | {f"{m}.{n}" for m in _ATTRS for n in _FIELD_DECORATORS}
    def last(e: ast.expr) -> str:
        e = e.func if isinstance(e, ast.Call) else e
        return e.attr if isinstance(e, ast.Attribute) else e.id if isinstance(e, ast.Name) else ""

    makers = [d for d in cls.decorator_list if last(d) in _FIELD_DECORATORS]
    makers += [b for b in cls.bases if last(b) in _FIELD_BASES]
    return bool(makers) and all(_origin(m, imports) in known for m in makers)


def _mentions(expr: Optional[ast.expr], words: Tuple[str, ...]) -> bool:
    for n in ast.walk(expr) if expr is not None else ():
        if isinstance(n, ast.Name) and n.id in words:
            return True
        if isinstance(n, ast.Attribute) and n.attr in words:
            return True
        if isinstance(n, ast.Constant) and isinstance(n.value, str) \
                and any(w in n.value for w in words):
            return True
    return False


def _annotation_only(old: ast.stmt, new: ast.stmt) -> bool:
    """Same field, same default, only the annotation differs (and no field marker)."""
    return (isinstance(old, ast.AnnAssign) and isinstance(new, ast.AnnAssign)
            and dump(old.target) == dump(new.target) and old.simple == new.simple
            and dumps([old.value] if old.value else []) == dumps([new.value] if new.value else [])
            and not _mentions(old.annotation, _FIELD_MARKERS)
            and not _mentions(new.annotation, _FIELD_MARKERS))


def _field_order(cls: ast.ClassDef) -> List[str]:
    return [n for st in cls.body if stmt_category(st) in ("assign", "annotation")
            for n in bound_names(st)]


def _never_runs(stmt: ast.stmt, imports: Dict[str, str], body: List[ast.stmt]) -> str:
    """Why a module-level statement does nothing when the module is imported ('' if it may).

    ``if TYPE_CHECKING:`` (typing's constant, never rebound in the module) and
    ``if __name__ == "__main__":`` (a module Suture patches is imported by its name),
    both without ``else``.
    """
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return ""
    test = stmt.test
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        bindings = [st for st in body if "TYPE_CHECKING" in bound_names(st)]
        if (imports.get("TYPE_CHECKING") in {f"from {m} import TYPE_CHECKING" for m in _TYPING}
                and len(bindings) == 1):
            return "TYPE_CHECKING is False at run time: the block never ran and never will"
    if isinstance(test, ast.Attribute) and _origin(test, imports) in {
            f"{m}.TYPE_CHECKING" for m in _TYPING}:
        return "TYPE_CHECKING is False at run time: the block never ran and never will"
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        sides = {dump(test.left), dump(test.comparators[0])}
        if sides == {dump(ast.Name(id="__name__", ctx=ast.Load())),
                     dump(ast.Constant(value="__main__"))}:
            return ("a module imported under its own name never has __name__ == '__main__'; "
                    "a module run as a script is not one Suture patches")
    return ""


def _plain_dataclass(cls: ast.ClassDef, imports: Dict[str, str]) -> bool:
    """Decorated only by the standard library's ``@dataclass``, without ``slots=True``
    (slots fix the layout of every instance) and with no field-making base."""
    if len(cls.decorator_list) != 1 or _base_names(cls) & _FIELD_BASES:
        return False
    d = cls.decorator_list[0]
    if _origin(d, imports) != "dataclasses.dataclass":
        return False
    return not (isinstance(d, ast.Call) and any(
        k.arg == "slots" and not (isinstance(k.value, ast.Constant) and not k.value.value)
        or k.arg is None for k in d.keywords))


def _is_field(stmt: ast.stmt) -> bool:
    """An annotated name in a dataclass body (markers such as ClassVar are checked apart)."""
    return isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)


def _class_default(stmt: ast.stmt) -> bool:
    """Does the field leave a plain default on the class, for instances that lack it?

    ``x: int = 0`` and ``x: int = field(default=0)`` do; no value, ``field()`` and
    ``field(default_factory=...)`` do not.
    """
    value = getattr(stmt, "value", None)
    if value is None:
        return False
    if isinstance(value, ast.Call) and (
            isinstance(value.func, ast.Name) and value.func.id == "field"
            or isinstance(value.func, ast.Attribute) and value.func.attr == "field"):
        return any(k.arg == "default" for k in value.keywords)
    return True


def _uses_globals(tree: ast.Module) -> bool:
    """Does the module call ``globals()`` (and may so bind any name at run time)?"""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "globals" for n in ast.walk(tree))


def _declared_global(tree: ast.Module) -> Set[str]:
    return {name for n in ast.walk(tree) if isinstance(n, ast.Global) for name in n.names}


def _settable(stmt: ast.stmt) -> bool:
    """``X.a = v`` or ``X[k] = v``: the engine makes the assignment an undoable op."""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and stmt_category(stmt) == "mutation"
            and (isinstance(stmt.targets[0], ast.Attribute)
                 or isinstance(stmt.targets[0], ast.Subscript)
                 and not isinstance(stmt.targets[0].slice, ast.Slice)))


def _defines(stmt: ast.stmt) -> bool:
    return any(_is_def(c) or _defines(c) for c in _block_children(stmt))


def _import_map(body: List[ast.stmt]) -> Dict[str, str]:
    """Name bound by each top-level import -> where it comes from."""
    out: Dict[str, str] = {}
    for s in body:
        if isinstance(s, ast.Import):
            for a in s.names:
                out[a.asname or a.name.split(".")[0]] = f"import {a.name}"
        elif isinstance(s, ast.ImportFrom) and s.module != "__future__":
            for a in s.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"from {'.' * s.level}{s.module or ''} import {a.name}"
    return out


def _text(stmt: ast.stmt) -> str:
    text = ast.unparse(stmt).splitlines()[0] if hasattr(ast, "unparse") else type(stmt).__name__
    return text if len(text) <= 72 else text[:69] + "..."


def _has_slots(body: List[ast.stmt], name: str) -> bool:
    """Does class ``name`` (defined in ``body``) declare non-empty ``__slots__``?"""
    for s in body:
        if isinstance(s, ast.ClassDef) and s.name == name:
            for m in s.body:
                if "__slots__" in bound_names(m):
                    value = getattr(m, "value", None)
                    return not (isinstance(value, (ast.Tuple, ast.List)) and not value.elts)
    return False


# -- the diff ----------------------------------------------------------------

class _Differ:
    def __init__(self, old: ast.Module, new: ast.Module, modname: str) -> None:
        self.old = old
        self.new = new
        self.mod = modname
        self.plan = ModulePlan()
        self.old_funcs = dict(iter_functions(old.body))
        self.new_funcs = dict(iter_functions(new.body))

    def add(self, kind: str, qualname: str, verdict: str, reason: str = "") -> None:
        self.plan.changes.append(Change(kind, qualname, verdict, reason))

    def run(self) -> ModulePlan:
        self._functions()
        self._module_level()
        self._dependents()
        self.plan.future_flags = [s for s in self.new.body if stmt_category(s) == "future"]
        return self.plan

    # functions and methods at any depth: code swaps, defaults, __init__ attributes
    def _functions(self) -> None:
        for q, new in self.new_funcs.items():
            old = self.old_funcs.get(q)
            if old is None:
                continue  # additions are reported where they are bound
            kind = "method" if self._in_class(q) else "function"
            if "<locals>" in q:
                kind = "nested function"
            if _body_dump(old) != _body_dump(new):
                reason = ""
                if isinstance(old, ast.AsyncFunctionDef) != isinstance(new, ast.AsyncFunctionDef):
                    reason = "changes between def and async def; callers see the new kind"
                self.add(f"changed {kind}", q, "caveat" if reason else "live", reason)
                if kind == "method" and _uses_class_cell(old) != _uses_class_cell(new):
                    self.add("method starts using super()" if _uses_class_cell(new) else
                             "method stops using super()", q, "caveat",
                             "its closure must gain or lose the __class__ cell: a new function "
                             "object takes the fix and the old one forwards to it, so every "
                             "reference sees it; the old object's signature reads "
                             "(*args, **kwargs)")
                if q.endswith(".__init__"):
                    gained = sorted(_self_attrs(new) - _self_attrs(old))
                    if gained:
                        self.add("__init__ sets new attributes", q, "caveat",
                                 f"instances created before the patch lack {', '.join(gained)}; "
                                 "attach a migration hook (MIGRATIONS) to set them")
            if _defaults_dump(old) != _defaults_dump(new):
                if "<locals>" in q:
                    self.add("changed default", q, "caveat",
                             "new closures get the new defaults; closures that already exist "
                             "keep the old ones")
                else:
                    self.add("changed default", q, "caveat",
                             "defaults are evaluated again at apply; the old default objects "
                             "are dropped")
                    self.plan.recompute_defaults.append(q)
            if dumps(old.decorator_list) != dumps(new.decorator_list) and "<locals>" not in q:
                pass  # handled with the statement that binds it (module/class level)
        for q in self.new_funcs.keys() - self.old_funcs.keys():
            if "<locals>" in q:
                self.add("added nested function", q, "live")
        for q in self.old_funcs.keys() - self.new_funcs.keys():
            if "<locals>" in q:
                self.add("removed nested function", q, "live")

    def _same(self, cat: str, before: Optional[ast.stmt], stmt: ast.stmt, where: str) -> bool:
        """Nothing to run again: equal, or differing only in function bodies (swapped in
        place) or, for other statements, in the names of loop variables."""
        if before is None:
            return False
        if cat not in ("binding-block", "other", "mutation"):
            return dump(before) == dump(stmt)
        if _shape(before) == _shape(stmt):
            return True
        if cat != "binding-block" and normal_form(before) == normal_form(stmt):
            self.add("renamed loop variable", where, "live",
                     f"`{_text(stmt)}` does what it did under another variable name; the old "
                     "loop variable stays bound where the loop left it")
            return True
        return False

    def _in_class(self, q: str) -> bool:
        parent = q.rsplit(".", 1)[0] if "." in q else ""
        return bool(parent) and "<locals>" not in q and parent in dict(iter_classes(self.new.body))

    def _module_level(self) -> None:
        old_k, new_k = _keyed(self.old.body), _keyed(self.new.body)
        old_imports, new_imports = _import_map(self.old.body), _import_map(self.new.body)
        new_only = ({n for st in self.new.body for n in bound_names(st)}
                    - {n for st in self.old.body for n in touched_names(st)})
        self._new_only = new_only
        execd: Set[int] = set()
        for key, stmt in new_k.items():
            before = old_k.get(key)
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            label = ", ".join(names) or key.split(":", 1)[-1][:60]
            if cat == "class":
                if before is None:
                    self.add("added class", stmt.name, "live")  # type: ignore[attr-defined]
                    execd.add(id(stmt))
                else:
                    self._class(stmt.name, before, stmt)  # type: ignore[arg-type, attr-defined]
                continue
            if cat == "def":
                if before is None:
                    self.add("added function", stmt.name, "live")  # type: ignore[attr-defined]
                    execd.add(id(stmt))
                elif dumps(before.decorator_list) != dumps(stmt.decorator_list):  # type: ignore[attr-defined]
                    self.add("changed decorator", stmt.name, "caveat",  # type: ignore[attr-defined]
                             "the definition is executed again and the name rebound; references "
                             "to the old decorated object elsewhere keep it, and anything the old "
                             "decorator registered stays registered")
                    execd.add(id(stmt))
                continue
            if cat == "import":
                fresh = [n for n, src in _import_map([stmt]).items() if old_imports.get(n) != src]
                for n in fresh:
                    self.add("added import" if n not in old_imports else "changed import", n,
                             "live")
                if fresh or (_import_call(stmt) and before is None):
                    execd.add(id(stmt))
                continue
            if self._same(cat, before, stmt, label) or _annotated_only(before, stmt):
                continue
            inert = _never_runs(stmt, new_imports, self.new.body)
            if inert and (before is None or _never_runs(before, old_imports, self.old.body)):
                self.add("added code that never runs" if before is None else
                         "changed code that never runs", "<module>", "live",
                         f"`{_text(stmt)}`: {inert}")
                continue
            if cat == "future":
                if before is None:
                    self.add("added __future__ import", label, "restart",
                             "a __future__ import changes how the whole module compiles")
                continue
            if cat == "docstring":
                self.add("changed docstring", "__doc__", "live")
                execd.add(id(stmt))
                self.plan.bind.append("__doc__")
                continue
            if cat == "annotation":
                continue
            verb = "added" if before is None else "changed"
            if cat == "binding-block" and _defines(stmt):
                self.add(f"{verb} conditional definitions", label, "caveat",
                         "the block runs again: the functions and classes it defines are new "
                         "objects (changed code is also swapped into the old ones); instances "
                         "made before keep the old classes")
                execd.add(id(stmt))
                continue
            if cat in ("assign", "binding-block"):
                self.add(f"{verb} module constant", label, "caveat",
                         "rebound in this module and in modules that did `from ... import` "
                         "it; other references to the old value keep it")
                execd.add(id(stmt))
                continue
            if cat == "mutation" and mutated_root(stmt) in new_only:
                self.add(f"{verb} module statement", mutated_root(stmt), "caveat",
                         f"`{_text(stmt)}` acts on a name this patch creates: it runs once, "
                         "as at a fresh import of the fixed version")
                execd.add(id(stmt))
                continue
            if _settable(stmt):
                self.add(f"{verb} module statement", mutated_root(stmt), "caveat",
                         f"`{_text(stmt)}`: the value is computed while preparing and set in "
                         "the commit (revert restores the old one)")
                execd.add(id(stmt))
                continue
            self.add("added module statement" if before is None else "changed module statement",
                     "<module>", "hook",
                     f"`{_text(stmt)}`: module-level code with side effects cannot be re-run "
                     "safely; attach a hook that performs it (suture build --hooks)")
        for n in sorted(old_imports.keys() - new_imports.keys()):
            self.add("removed import", n, "live")
        for key, stmt in old_k.items():
            if key in new_k:
                continue
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            if cat == "import":
                continue
            inert = _never_runs(stmt, old_imports, self.old.body)
            if inert:
                self.add("removed code that never runs", "<module>", "live",
                         f"`{_text(stmt)}`: {inert}")
                continue
            if cat in ("def", "class"):
                self.add(f"removed {'class' if cat == 'class' else 'function'}", names[0],
                         "caveat", "the name is unbound; references held elsewhere keep the "
                         "old object")
            elif cat in ("assign", "binding-block", "docstring"):
                self.add("removed module constant", ", ".join(names) or key, "live")
            elif cat == "future":
                self.add("removed __future__ import", key, "restart",
                         "a __future__ import changes how the whole module compiles")
            else:
                self.add("removed module statement", "<module>", "hook",
                         f"`{_text(stmt)}`: the effect of module-level code that ran at import "
                         "cannot be undone automatically; attach a hook")
        new_bound = {n for s in self.new.body for n in bound_names(s)
                     if not _never_runs(s, new_imports, self.new.body)}
        old_bound = {n for s in self.old.body for n in bound_names(s)
                     if not _never_runs(s, old_imports, self.old.body)}
        gone = old_bound - new_bound
        values = {n for st in self.old.body if stmt_category(st) in ("assign", "binding-block")
                  for n in bound_names(st)}   # removed defs and classes are unbound anyway
        kept = (gone if _uses_globals(self.new) else gone & _declared_global(self.new)) & values
        for n in sorted(kept):
            self.add("name bound at run time", n, "caveat",
                     "the fixed module no longer binds it at import, but its code binds "
                     "module globals at run time (`global`, `globals()`): it stays bound")
        self.plan.delete = sorted(gone - kept)
        self._execd = execd

    def _class(self, q: str, old: ast.ClassDef, new: ast.ClassDef) -> None:
        cp = ClassPlan(q)
        kind = _class_kind(new)
        if dumps(old.keywords) != dumps(new.keywords):
            self.add("changed class keywords", q, "restart",
                     "the metaclass or class keywords changed; the class object itself "
                     "would have to be rebuilt")
        if dumps(old.decorator_list) != dumps(new.decorator_list):
            self.add("changed class decorator", q, "hook",
                     "class decorators cannot be re-run on the live class; attach a hook")
        if dumps(old.bases) != dumps(new.bases):
            grown = _base_names(new) - _base_names(old)
            slotted = {n for n in grown if _has_slots(self.new.body, n)}
            if not (_base_names(old) - {"object"}):
                self.add("changed class bases", q, "restart",
                         "the class had no base but object; CPython refuses to give such a "
                         "class other bases in place ('deallocator differs from object')")
            elif grown & _LAYOUT_BUILTINS or slotted or _class_kind(old) != kind:
                self.add("changed class bases", q, "restart",
                         f"new base {', '.join(sorted((grown & _LAYOUT_BUILTINS) | slotted)) or 'kind'} "
                         "changes the instance layout")
            else:
                self.add("changed class bases", q, "caveat",
                         "__bases__ is assigned in place; refused at apply if the instance "
                         "layouts are incompatible")
                cp.new_bases = list(new.bases)
        metadata = kind == "fields" and (
            _annotations_are_metadata(old, _import_map(self.old.body))
            and _annotations_are_metadata(new, _import_map(self.new.body)))
        # The standard library's @dataclass generates its methods from the class body: the
        # engine runs the new body and decorator on a scratch class and moves the generated
        # methods, the field table and the defaults onto the live class.
        regen = ("." not in q and _plain_dataclass(old, _import_map(self.old.body))
                 and _plain_dataclass(new, _import_map(self.new.body))
                 and dumps(old.decorator_list) == dumps(new.decorator_list))
        if kind == "fields":
            before_order, after_order = _field_order(old), _field_order(new)
            kept = set(before_order) & set(after_order)
            if [n for n in before_order if n in kept] != [n for n in after_order if n in kept]:
                self.add("reordered fields", q, "restart",
                         "field order fixes the positional parameters of __init__ (and the "
                         "items of a NamedTuple)")
        old_k, new_k = _keyed(old.body), _keyed(new.body)
        for key, stmt in new_k.items():
            before = old_k.get(key)
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            mq = f"{q}.{names[0]}" if names else q
            if cat == "class":
                if before is None:
                    self.add("added class", mq, "live")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                else:
                    self._class(mq, before, stmt)  # type: ignore[arg-type]
                continue
            if cat == "def":
                if before is None:
                    self.add("added method", mq, "live")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                elif dumps(before.decorator_list) != dumps(stmt.decorator_list):  # type: ignore[attr-defined]
                    self.add("changed decorator", mq, "caveat",
                             "the method is defined again and rebound on the class; references "
                             "to the old decorated object elsewhere keep it")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                continue
            if self._same(cat, before, stmt, mq):
                continue
            if "__slots__" in names:
                self.add("changed __slots__", mq, "restart",
                         "instances have a fixed layout; existing instances cannot gain or "
                         "lose slots")
            elif kind == "enum" and cat == "assign":
                self.add("changed enum member", mq, "restart",
                         "Enum members are singletons created with the class")
            elif (kind == "fields" and cat in ("assign", "annotation") and before is not None
                  and metadata and _annotation_only(before, stmt)):
                self.add("changed field annotation", mq, "caveat",
                         "only the type annotation changed: __init__, the default and the "
                         "instance layout are the same; the class's __annotations__ (and "
                         "dataclasses.fields().type) keep the old annotation")
            elif regen and cat in ("assign", "annotation") and not _is_field(stmt) \
                    and (before is None or not _is_field(before)):
                self.add("changed class attribute" if before else "added class attribute",
                         mq, "live")   # no annotation: a plain class attribute, not a field
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
            elif regen and cat in ("assign", "annotation") and not (
                    _mentions(stmt.annotation if isinstance(stmt, ast.AnnAssign) else None,
                              _FIELD_MARKERS)
                    or before is not None and _mentions(getattr(before, "annotation", None),
                                                        _FIELD_MARKERS)):
                cp.regenerate = True
                if before is None and not _class_default(stmt):
                    self.add("added field", mq, "hook",
                             f"instances made before the patch have no `{names[0]}` and the "
                             "field has no plain default for them to fall back on; attach a "
                             "migration hook (MIGRATIONS) that gives them the value the old "
                             "code meant")
                else:
                    self.add("added field" if before is None else "changed field", mq,
                             "caveat", "the dataclass is generated again (__init__, __repr__, "
                             "__eq__, fields(), defaults) on the live class; instances made "
                             "before keep the field values they have")
            elif kind == "fields" and cat in ("assign", "annotation"):
                self.add("changed field", mq, "restart",
                         "dataclass/attrs/NamedTuple fields fix __init__ and the layout of "
                         "every instance")
            elif cat in ("assign", "import", "binding-block"):
                self.add("changed class attribute" if before else "added class attribute",
                         mq, "live")
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
            elif cat in ("docstring", "annotation", "pass"):
                continue
            else:
                self.add("changed class body statement", f"{q}.<body>", "hook",
                         f"`{_text(stmt)}`: class-body code other than definitions and assignments cannot be "
                         "re-run on the live class")
        for key, stmt in old_k.items():
            if key in new_k:
                continue
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            mq = f"{q}.{names[0]}" if names else q
            if "__slots__" in names:
                self.add("removed __slots__", mq, "restart", "instances have a fixed layout")
            elif kind == "enum" and cat == "assign":
                self.add("removed enum member", mq, "restart",
                         "Enum members are singletons created with the class")
            elif regen and cat in ("assign", "annotation") and _is_field(stmt) \
                    and not _mentions(getattr(stmt, "annotation", None), _FIELD_MARKERS):
                cp.regenerate = True
                self.add("removed field", mq, "caveat",
                         "the dataclass is generated again without it; instances made before "
                         "keep the attribute")
            elif kind == "fields" and cat in ("assign", "annotation"):
                self.add("removed field", mq, "restart",
                         "dataclass/attrs/NamedTuple fields fix __init__ and the layout")
            elif cat in ("def", "class", "assign", "import", "binding-block"):
                self.add(f"removed {'method' if cat == 'def' else 'class attribute'}", mq,
                         "live" if cat != "def" else "caveat",
                         "" if cat != "def" else "references held elsewhere keep the old method")
            elif cat not in ("docstring", "annotation", "pass"):
                self.add("removed class body statement", f"{q}.<body>", "hook",
                         f"`{_text(stmt)}`: class-body code that ran at import cannot be undone automatically")
        new_bound = {n for s in new.body for n in bound_names(s)}
        old_bound = {n for s in old.body for n in bound_names(s)}
        cp.delete = sorted(old_bound - new_bound)
        # A method's default that reads a class attribute the patch rebinds (urllib3 2.2.2:
        # ``remove_headers_on_redirect=DEFAULT_REMOVE_HEADERS_ON_REDIRECT``) follows it.
        rebound = {n for m in cp.exec_members if stmt_category(m) != "def"
                   for n in bound_names(m)}
        for m in new.body:
            mq = f"{q}.{getattr(m, 'name', '')}"
            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and mq not in self.plan.recompute_defaults \
                    and _names_in([*m.args.defaults, *m.args.kw_defaults]) & rebound:
                self.plan.recompute_defaults.append(mq)
                self.add("re-evaluated default", mq, "caveat",
                         "a default argument reads a class attribute the patch changes")
        if cp.regenerate:
            # module code that builds instances at import is evaluated again (_dependents)
            self.add("regenerated __init__", f"{q}.__init__", "caveat",
                     "generated by @dataclass from the new fields")
        if cp.exec_members or cp.delete or cp.new_bases is not None or cp.regenerate:
            self.plan.classes.append(cp)

    def _dependents(self) -> None:
        """Module-level assignments that must be evaluated again (case: DEFAULT = Policy(3)).

        An unchanged assignment is re-evaluated when its value calls something whose
        construction changed (a changed function, or a class whose __init__/__new__/
        __post_init__/bases changed) or reads a name this patch rebinds. Classes whose
        other methods changed do not count: re-creating ``SESSIONS = Store()`` because
        ``Store.get`` changed would throw away live state for nothing.
        """
        changed_q = {c.qualname for c in self.plan.changes if c.verdict != "restart"}
        construct: Set[str] = set()
        for q in changed_q:
            head, _, tail = q.partition(".")
            if not tail:
                construct.add(head)
            elif tail in ("__init__", "__new__", "__post_init__", "__call__"):
                construct.add(head)
        for cp in self.plan.classes:
            if cp.new_bases is not None:
                construct.add(cp.qualname.split(".")[0])
        execd = self._execd
        rebound: Set[str] = set()
        for s in self.new.body:
            if id(s) in execd and stmt_category(s) not in ("def", "class"):
                rebound.update(bound_names(s))
        constants = set(rebound)   # rebound by the patch's own statements, known before commit
        reasons: Dict[int, str] = {}
        grew = True
        while grew:
            grew = False
            for s in self.new.body:
                if id(s) in execd or not (stmt_category(s) == "assign" or _settable(s)):
                    continue
                value = s.value  # type: ignore[attr-defined]
                why = sorted(_called_roots(value) & construct) or sorted(_names_in([value]) & rebound)
                if why:
                    execd.add(id(s))
                    names = bound_names(s) or [_text(s).split("=")[0].strip()]
                    rebound.update(bound_names(s))
                    reasons[id(s)] = ", ".join(why)
                    self.add("re-evaluated module constant", ", ".join(names), "caveat",
                             f"built at import from {reasons[id(s)]}, which the patch changes; "
                             "the module gets a new object like a fresh import would, and "
                             "references to the old object elsewhere keep it")
                    grew = True
        self._import_time_readers(execd, constants)
        # unchanged top-level defaults that read a rebound name are evaluated again
        for q, fn in self.new_funcs.items():
            if "<locals>" in q or q in self.plan.recompute_defaults:
                continue
            if _names_in([*fn.args.defaults, *fn.args.kw_defaults]) & rebound:
                self.plan.recompute_defaults.append(q)
                self.add("re-evaluated default", q, "caveat",
                         "a default argument reads a constant the patch changes")
        self._class_attr_dependents(constants)
        self._whole_chains(self.new.body, execd, self._new_only, "<module>")
        new_classes, old_classes = dict(iter_classes(self.new.body)), dict(iter_classes(self.old.body))
        for cp in self.plan.classes:
            body = new_classes[cp.qualname].body
            chosen = {id(m) for m in cp.exec_members}
            old_names = {n for st in old_classes[cp.qualname].body for n in touched_names(st)} \
                if cp.qualname in old_classes else set()
            new_only = {n for st in body for n in bound_names(st)} - old_names
            self._whole_chains(body, chosen, new_only, f"{cp.qualname}.<body>")
            cp.exec_members = [m for m in body if id(m) in chosen]
            cp.bind = list(dict.fromkeys([*cp.bind, *(n for m in cp.exec_members
                                                      for n in bound_names(m))]))
        self.plan.exec_stmts = [s for s in self.new.body if id(s) in execd]
        self.plan.bind = sorted(set(self.plan.bind) | {
            n for s in self.plan.exec_stmts for n in bound_names(s)})
        self.plan.delete = [n for n in self.plan.delete if n not in self.plan.bind]


    def _import_time_readers(self, execd: Set[int], constants: Set[str]) -> None:
        """Unchanged module-level code that called, at import, a function reading a constant
        the patch changes (requests 2.32: ``_init()`` fills ``codes`` from ``_codes``).

        Its effect was computed from the old value and nothing redoes it: running it again
        would act on live objects (not undoable), so a human decides, in a hook.
        """
        data = {n for st in self.new.body if id(st) in execd
                and stmt_category(st) in ("assign", "binding-block", "mutation")
                for n in bound_names(st)} & constants   # not imports: the same modules
        reads: Dict[str, Set[str]] = {}
        grew = bool(data)
        while grew:
            grew = False
            for st in self.new.body:
                if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                used = _names_in(st.body)
                got = (used & data).union(*(reads[r] for r in used & set(reads)))
                if got and got != reads.get(st.name):
                    reads[st.name] = got
                    grew = True
        for st in self.new.body:
            if id(st) in execd or stmt_category(st) in ("def", "class", "import", "future"):
                continue
            called = sorted(_called_roots(st) & set(reads))
            if called:
                read = sorted(set().union(*(reads[c] for c in called)))
                self.add("import-time call of changed data", "<module>", "hook",
                         f"`{_text(st)}` ran at import and called {', '.join(called)}, which "
                         f"reads {', '.join(read)} that the patch changes; its effect is not "
                         "redone automatically (it acts on live objects): attach a hook that "
                         "redoes it, or says why nothing needs doing")

    def _whole_chains(self, body: List[ast.stmt], chosen: Set[int], new_only: Set[str],
                      where: str) -> None:
        """Run every statement that builds a name when one of them runs (in place, ``chosen``).

        ``DECODERS = [...]`` then ``if HAS_X: DECODERS += ["x"]``: running the changed
        ``+=`` alone would extend the live list a second time. Running the chain from its
        first statement builds a new object as a fresh import does. That is only safe when
        the first statement makes the object right there (a display, a def); otherwise the
        chain would repeat its changes on a shared object, which needs a hook.
        """
        grew = True
        while grew:
            grew = False
            for s in body:
                if id(s) not in chosen:
                    continue
                for n in sorted(touched_names(s)):
                    if n not in bound_names(s) and (_settable(s) or not _in_place(s, n)):
                        continue  # an attribute/item set is an op on the live object
                    chain = [t for t in body if n in touched_names(t)]
                    if len(chain) < 2 or not any(_in_place(t, n) for t in chain):
                        continue
                    if n not in new_only and not _fresh(chain[0], n):
                        self.add("changed module statement" if where == "<module>" else
                                 "changed class body statement", where, "hook",
                                 f"`{n}` is built by several statements and the first, "
                                 f"`{_text(chain[0])}`, does not make a new object: running "
                                 "them again would repeat their changes on the live one")
                        continue
                    for t in chain:
                        if id(t) not in chosen:
                            chosen.add(id(t))
                            grew = True
                            self.add("re-run statement", f"{where}:{n}", "caveat",
                                     f"`{_text(t)}` runs again with the changed statements "
                                     f"that build `{n}`, so the new object is whole")

    def _class_attr_dependents(self, constants: Set[str]) -> None:
        """Class attributes computed from a changed constant (``limit = MAX_LEN``) follow it."""
        if not constants:
            return
        plans = {cp.qualname: cp for cp in self.plan.classes}
        old_classes = dict(iter_classes(self.old.body))
        for q, cls in iter_classes(self.new.body):
            if q not in old_classes:
                continue  # a new class is built from the new constants anyway
            cp = plans.get(q)
            for stmt in cls.body:
                if stmt_category(stmt) != "assign" or (cp and stmt in cp.exec_members):
                    continue
                if not _names_in([stmt.value]) & constants:  # type: ignore[attr-defined]
                    continue
                if cp is None:
                    cp = plans[q] = ClassPlan(q)
                    self.plan.classes.append(cp)
                names = bound_names(stmt)
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
                self.add("re-evaluated class attribute", f"{q}.{', '.join(names)}", "caveat",
                         "computed in the class body from a constant the patch changes; "
                         "instances that set their own value keep it")


@dataclass
class Dependents:
    """What an unchanged module computed at import from names that are now rebound."""
    stmts: List[ast.stmt] = field(default_factory=list)                  # module-level assigns
    defaults: List[Tuple[str, FuncNode]] = field(default_factory=list)   # (qualname, def)
    class_attrs: List[Tuple[str, ast.stmt]] = field(default_factory=list)
    names: Set[str] = field(default_factory=set)                         # names they rebind


def dependents(tree: ast.Module, changed: Set[str]) -> Dependents:
    """Module-level assignments, defaults and class attributes that read ``changed`` names.

    Used for modules the patch does not touch but that did ``from m import X``
    and computed something from X at import (``HARD_CAP = MAX_UPLOAD * 2``,
    ``def accept(size, cap=MAX_UPLOAD)``): a fresh process of the fixed version
    computes them from the new X.
    """
    out = Dependents()
    names = set(changed)
    grew = True
    while grew:
        grew = False
        for s in tree.body:
            if s in out.stmts or stmt_category(s) != "assign":
                continue
            if _names_in([s.value]) & names:  # type: ignore[attr-defined]
                out.stmts.append(s)
                bound = bound_names(s)
                names.update(bound)
                out.names.update(bound)
                grew = True
    out.stmts.sort(key=lambda s: tree.body.index(s))
    for q, fn in iter_functions(tree.body):
        if "<locals>" not in q and _names_in([*fn.args.defaults, *fn.args.kw_defaults]) & names:
            out.defaults.append((q, fn))
    for q, cls in iter_classes(tree.body):
        for stmt in cls.body:
            if stmt_category(stmt) == "assign" and _names_in([stmt.value]) & names:  # type: ignore[attr-defined]
                out.class_attrs.append((q, stmt))
    return out


def diff_module(old_source: str, new_source: str, modname: str = "") -> ModulePlan:
    """Classify every definition-level change between two versions of one module."""
    old = ast.parse(old_source)
    new = ast.parse(new_source)
    plan = _Differ(old, new, modname).run()
    plan.old_tree, plan.new_tree = old, new
    return plan


def added_module_plan(source: str) -> ModulePlan:
    ast.parse(source)
    return ModulePlan(changes=[Change("added module", "", "live")])
