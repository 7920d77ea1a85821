"""The rules a verdict rests on: what a change to a class, a field or a statement means.

Enters: statements and class definitions (old and new). Leaves: booleans and small
facts the diff turns into verdicts: the kind of a class (enum, dataclass, attrs,
NamedTuple; ``_class_kind``), whether an annotation is a field or metadata
(``_annotations_are_metadata``, ``_annotation_only``), whether a module-level value is
built fresh or changed in place (``_fresh``, ``_in_place``), whether a class has slots
or a layout that live objects cannot change (``_has_slots``, ``_LAYOUT_BUILTINS``).
Invariant: pure functions of the tree, like ``syntax``; the diff is the only caller
that turns them into ``Change`` records.
"""

from __future__ import annotations

import ast
from typing import Dict, List, Optional, Set, Tuple

from .syntax import (_base_names, _block_children, _decorator_names, _names_in, _root, _text,
                     bound_names, dump, dumps, mutated_root, stmt_category)


_LAYOUT_BUILTINS = {"int", "str", "bytes", "tuple", "list", "dict", "set", "frozenset",
                    "float", "complex", "bytearray", "BaseException", "Exception"}
_FIELD_DECORATORS = {"dataclass", "define", "frozen", "mutable", "s", "attrs", "attrib"}
_ENUM_HINTS = ("Enum", "Flag")
_FIELD_BASES = {"NamedTuple", "TypedDict"}


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


def _settable(stmt: ast.stmt) -> bool:
    """``X.a = v`` or ``X[k] = v``: the engine makes the assignment an undoable op."""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and stmt_category(stmt) == "mutation"
            and (isinstance(stmt.targets[0], ast.Attribute)
                 or isinstance(stmt.targets[0], ast.Subscript)
                 and not isinstance(stmt.targets[0].slice, ast.Slice)))


def _has_slots(body: List[ast.stmt], name: str) -> bool:
    """Does class ``name`` (defined in ``body``) declare non-empty ``__slots__``?"""
    for s in body:
        if isinstance(s, ast.ClassDef) and s.name == name:
            for m in s.body:
                if "__slots__" in bound_names(m):
                    value = getattr(m, "value", None)
                    return not (isinstance(value, (ast.Tuple, ast.List)) and not value.elts)
    return False


def import_objects(body: List[ast.stmt]) -> Set[Tuple[str, str]]:
    """(name, object) for every name a top-level import binds: ``import a.b`` binds ``a``
    to the package ``a``, as ``import a`` does; ``import a.b as x`` binds ``x`` to ``a.b``;
    ``from m import y`` binds ``y`` to m's ``y``. Two statements with the same pair bind the
    same object (the one ``sys.modules`` holds): running one again builds nothing."""
    out: Set[Tuple[str, str]] = set()
    for s in body:
        if isinstance(s, ast.Import):
            for a in s.names:
                out.add((a.asname, f"module {a.name}") if a.asname else
                        (a.name.split(".")[0], f"module {a.name.split('.')[0]}"))
        elif isinstance(s, ast.ImportFrom) and s.module != "__future__":
            for a in s.names:
                if a.name != "*":
                    out.add((a.asname or a.name,
                             f"from {'.' * s.level}{s.module or ''} import {a.name}"))
    return out


Chain = Tuple[str, ...]


def _chain(e: ast.expr) -> Optional[Chain]:
    """``a.b[k].c`` as ('a', '.b', '[k]', '.c'); None for anything that is not such a path."""
    if isinstance(e, ast.Name):
        return (e.id,)
    if isinstance(e, (ast.Attribute, ast.Subscript)):
        head = _chain(e.value)
        if head is None:
            return None
        return head + (f".{e.attr}" if isinstance(e, ast.Attribute) else f"[{dump(e.slice)}]",)
    return None


def _reads(node: ast.AST) -> List[Tuple[Chain, bool]]:
    """The paths ``node`` reads (longest only: ``a.b.c`` is one read, not three), each with
    whether it is called (``a.f()``)."""
    inner: Set[int] = set()
    called: Set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.Attribute, ast.Subscript)):
            inner.add(id(n.value))
        if isinstance(n, ast.Call):
            called.add(id(n.func))
    out: List[Tuple[Chain, bool]] = []
    for n in ast.walk(node):
        if id(n) in inner or not isinstance(n, (ast.Name, ast.Attribute, ast.Subscript)) \
                or not isinstance(getattr(n, "ctx", None), ast.Load):
            continue
        c = _chain(n)
        if c is not None:
            out.append((c, id(n) in called))
    return out


def _overlaps(read: Chain, called: bool, target: Chain) -> bool:
    """Does reading ``read`` see what assigning ``target`` set? A read of the target, of
    something inside it, of a container holding it, or a call of anything under its root
    (the callee may read it)."""
    n = min(len(read), len(target))
    return read[:n] == target[:n] or (called and read[0] == target[0])


def _set_target(stmt: ast.stmt) -> Optional[Chain]:
    return _chain(stmt.targets[0]) if _settable(stmt) else None  # type: ignore[attr-defined]


def _replaced_by(old_stmt: ast.stmt, old_body: List[ast.stmt], new_body: List[ast.stmt]
                 ) -> Tuple[Optional[ast.stmt], str]:
    """A removed ``X.a = v`` / ``X[k] = v`` whose target the fixed source assigns too.

    Returns (the new statement, '') when setting the target to the new statement's value is
    what a fresh import of the fixed version gives: ``X`` is bound by the same import (or
    is a class both versions define, patched in place) and each version assigns the
    target once; the new value reads no target that either version's statements assign
    (``X.MAX = X.MAX * 4`` would start from the old statement's effect, not from the
    import-time value: case 66b); and no other module-level statement reads the target
    (what it computed from the old value would stay). Else (None or the statement, why not).
    """
    target = _set_target(old_stmt)
    if target is None:
        return None, ""
    root = target[0]
    old_objs, new_objs = import_objects(old_body), import_objects(new_body)
    imported = {o for n, o in old_objs if n == root} & {o for n, o in new_objs if n == root}
    classes = {s.name for s in old_body if isinstance(s, ast.ClassDef)} \
        & {s.name for s in new_body if isinstance(s, ast.ClassDef)}
    if not imported and root not in classes:
        return None, ""
    bound_twice = [s for s in (*old_body, *new_body) if root in bound_names(s)
                   and not isinstance(s, (ast.Import, ast.ImportFrom, ast.ClassDef))]
    olds = [s for s in old_body if _set_target(s) == target]
    news = [s for s in new_body if _set_target(s) == target]
    if bound_twice or len(olds) != 1 or len(news) != 1:
        return None, ""
    new_stmt = news[0]
    targets = {t for s in (*old_body, *new_body) for t in [_set_target(s)] if t is not None}
    value = new_stmt.value  # type: ignore[attr-defined]
    for read, called in _reads(value):
        hit = next((t for t in targets if _overlaps(read, called, t)), None)
        if hit is not None:
            return new_stmt, (f"its new value reads `{''.join(read)}`, which this module's "
                              f"statements set (`{''.join(hit)}`): in the live process that "
                              "already holds the old statements' effect, not the value a "
                              "fresh import starts from")
    for s in new_body:
        if s is new_stmt or isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                           ast.ClassDef)):
            continue
        for read, called in _reads(s):
            if _overlaps(read, called, target):
                return new_stmt, (f"`{_text(s)}` reads `{''.join(read)}` at import: what it "
                                  "computed from the old value would stay")
    return new_stmt, ""
