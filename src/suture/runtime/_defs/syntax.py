"""Facts about module and class bodies, read from ``ast`` only.

Enters: statements, definitions and trees. Leaves: names, categories and
normalised dumps: what a statement binds (``bound_names``), mutates
(``mutated_root``) or touches, its category (``stmt_category``), functions and
classes by qualified name (``iter_functions``, ``iter_classes``), statements keyed
for matching across versions (``_keyed``). Used by the verdict rules, the diff and
the engine (which evaluates the statements the plan names).
Invariant: pure functions of the tree; no verdict is decided here.
"""

from __future__ import annotations

import ast
import copy as copy_module
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union


FuncNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]
DefNode = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]


def dump(node: Optional[ast.AST]) -> str:
    return "" if node is None else ast.dump(node, include_attributes=False)


def dumps(nodes: Iterable[Optional[ast.AST]]) -> str:
    return "|".join(dump(n) for n in nodes)


def walk(node: ast.AST) -> List[ast.AST]:
    """``list(ast.walk(node))``: the same nodes in the same (breadth-first) order, without
    ``ast.walk``'s three generators per node (apply time: every changed function is
    walked)."""
    out = [node]
    i = 0
    while i < len(out):
        n = out[i]
        i += 1
        for name in n._fields:
            v = getattr(n, name, None)   # iter_fields skips a missing field, as None is here
            if isinstance(v, ast.AST):
                out.append(v)
            elif isinstance(v, list):
                out.extend([x for x in v if isinstance(x, ast.AST)])
    return out


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
    """def | class | import | assign | binding-block | docstring | future | mutation | del |
    other."""
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
    if deleted_names(stmt):
        return "del"
    if mutated_root(stmt):
        return "mutation"
    return "other"


def deleted_names(stmt: ast.stmt) -> List[str]:
    """The names ``del NAME[, NAME...]`` unbinds, when every target is a plain name
    (``del obj.attr``, ``del d[k]`` act on objects: not listed, and ``[]`` returned)."""
    if not isinstance(stmt, ast.Delete) or not all(_simple_target(t) for t in stmt.targets):
        return []
    return [n for t in stmt.targets for n in _target_names(t)]


def unbound_at_end(body: List[ast.stmt]) -> Set[str]:
    """Names a top-level ``del`` unbinds and no later top-level statement binds again."""
    out: Set[str] = set()
    for s in body:
        out -= set(bound_names(s))
        out |= set(deleted_names(s))
    return out


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


def type_params_dump(fn: FuncNode) -> str:
    """A def's PEP 695 type parameters (3.12+; none before)."""
    return dumps(getattr(fn, "type_params", None) or [])


def annotations_dump(fn: FuncNode) -> str:
    """A def's annotations, in the order CPython puts them in ``__annotations__``."""
    a = fn.args
    args = [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]
    return dumps([x.annotation for x in args if x is not None] + [fn.returns])


# Decorators known not to read the annotations of what they wrap when it is defined
# (by the last part of their dotted name).
ANNOTATION_BLIND_DECORATORS = frozenset({
    "staticmethod", "classmethod", "property", "setter", "getter", "deleter",
    "cached_property", "abstractmethod", "lru_cache", "cache", "wraps", "overload",
    "final", "override", "contextmanager", "asynccontextmanager"})
# Decorators known to read them when the function is defined and to keep what they built
# (argument validators and converters, dispatch on the annotated type), and libraries
# whose decorators do (a FastAPI route's ``@app.get(...)``: its root is no import).
ANNOTATION_READING_DECORATORS = frozenset({
    "validate_call", "validate_arguments", "register", "typechecked", "beartype"})
ANNOTATION_READING_LIBRARIES = frozenset({
    "pydantic", "fastapi", "typer", "beartype", "typeguard", "strawberry", "litestar"})


def annotation_readers(fn: FuncNode, imports: Dict[str, str]) -> Tuple[List[str], List[str]]:
    """The decorators of ``fn`` that read its annotations when it is defined, and those
    that may (any other but the known-blind ones), as source text. ``imports``: the
    module's ``_import_map``."""
    known = any(src.split()[1].lstrip(".").split(".")[0] in ANNOTATION_READING_LIBRARIES
                for src in imports.values())
    reads: List[str] = []
    may: List[str] = []
    for d in fn.decorator_list:
        node = d.func if isinstance(d, ast.Call) else d
        last = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if last in ANNOTATION_BLIND_DECORATORS:
            continue
        (reads if known or last in ANNOTATION_READING_DECORATORS else may).append(
            "@" + _text(d))  # type: ignore[arg-type]
    return reads, may


def _body_dump(fn: FuncNode) -> str:
    return dumps(fn.body) + "|" + _signature_dump(fn) + "|" + dump(fn.returns) + type(fn).__name__


def same_body(old: FuncNode, new: FuncNode) -> bool:
    """``_body_dump(old) == _body_dump(new)``, mostly without dumping (apply time).

    The parts the dump joins are compared pairwise in the order the dump writes them
    (``_same_dump``); only when that cannot tell does it compare the two dumps.
    """
    o, n = old.args, new.args
    parts = ((old.body, new.body),
             ([*o.posonlyargs, *o.args, o.vararg, *o.kwonlyargs, o.kwarg],
              [*n.posonlyargs, *n.args, n.vararg, *n.kwonlyargs, n.kwarg]),
             ([old.returns], [new.returns]))
    for a, b in parts:
        if len(a) != len(b):
            return _body_dump(old) == _body_dump(new)   # "|"-joined: decided by the text
        for x, y in zip(a, b):
            if x is None or y is None:
                if x is y:
                    continue      # both dump as ""
                return _body_dump(old) == _body_dump(new)
            verdict = _same_dump(x, y)
            if verdict is _UNDECIDED:
                return _body_dump(old) == _body_dump(new)
            if verdict is _DIFFERENT:
                return False
    return type(old) is type(new)


# ``_same_dump``'s answers.
_EQUAL, _DIFFERENT, _UNDECIDED = "equal", "different", "undecided"
# Leaves whose ``repr`` differs exactly when they differ, and starts or ends where another
# value of the type cannot: a string or bytes in quotes (an inner quote is escaped), an
# int's digits (followed by what follows a value in a dump, never a digit), True/False.
_PLAIN_LEAVES = (str, bytes, int, bool)


def _same_dump(a: object, b: object) -> str:
    """Whether ``dump(a) == dump(b)`` for two values of the same field, read from the trees.

    ``_EQUAL`` when the two are the same classes with the same fields, of the same plain
    leaves (the dump writes nothing else, so the same text). ``_DIFFERENT`` when the first
    difference in the dump's order (fields in ``_fields`` order, lists in order, depth
    first) makes the two texts differ at that point while all before it was the same
    text: two node classes (a name followed by "("), two plain leaves of one type, two
    non-empty lists of different lengths ("]" against ", "). ``_UNDECIDED`` for any other
    first difference: what the dump leaves out varies by version (None fields; empty
    lists on 3.13+; ``Load()`` on 3.15), so only the dumps tell.
    """
    if isinstance(a, ast.AST):
        if type(a) is not type(b):
            if not isinstance(b, ast.AST) or isinstance(a, ast.expr_context) \
                    or isinstance(b, ast.expr_context):
                return _UNDECIDED
            return _DIFFERENT
        for name in a._fields:
            x = getattr(a, name, _MISSING)
            y = getattr(b, name, _MISSING)
            if x is y:
                if x is _MISSING:
                    return _UNDECIDED
                continue   # the same object (None, a shared context, an interned leaf)
            verdict = _same_dump(x, y)
            if verdict is not _EQUAL:
                return verdict
        return _EQUAL
    if isinstance(a, list):
        if not isinstance(b, list):
            return _UNDECIDED
        for x, y in zip(a, b):
            verdict = _same_dump(x, y)
            if verdict is not _EQUAL:
                return verdict
        if len(a) == len(b):
            return _EQUAL
        return _DIFFERENT if a and b else _UNDECIDED
    if a is None or b is None or a is _MISSING or b is _MISSING or isinstance(b, (ast.AST, list)):
        return _UNDECIDED
    if type(a) is type(b) and type(a) in _PLAIN_LEAVES:
        return _EQUAL if a == b else _DIFFERENT
    return _EQUAL if repr(a) == repr(b) else _UNDECIDED


_MISSING = object()


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


def _uses_globals(tree: ast.Module) -> bool:
    """Does the module call ``globals()`` (and may so bind any name at run time)?"""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "globals" for n in ast.walk(tree))


def _declared_global(tree: ast.Module) -> Set[str]:
    return {name for n in ast.walk(tree) if isinstance(n, ast.Global) for name in n.names}


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
