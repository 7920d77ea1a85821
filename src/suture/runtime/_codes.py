"""Code objects: structural identity and qualified names, on CPython 3.9-3.15.

Run-pre matching (Ksplice's term) compares the code a process runs with the code
the patch's baseline compiles to *in this interpreter*. Two code objects are
"the same" when everything that decides behaviour is equal: bytecode, constants
(recursively), names, variables, free and cell variables, flags and argument
counts. Line numbers and the file name are left out, so a patch still matches
after its module moved on disk, and after an earlier Suture patch recompiled it
under a distinct file name.
"""

from __future__ import annotations

import sys
from types import CodeType, FunctionType
from typing import Any, Dict, Iterator, List, Optional, Tuple

_CO_OPTIMIZED = 0x0001
_HAS_QUALNAME = sys.version_info >= (3, 11)
_KIND_FLAGS = 0x0020 | 0x0080 | 0x0100 | 0x0200  # generator, coroutine, iterable coro, async gen


def _const_key(c: Any, memo: Dict[int, Tuple[Any, ...]]) -> Any:
    if isinstance(c, CodeType):
        return structure(c, memo)
    if isinstance(c, (tuple, frozenset)):
        items = [_const_key(x, memo) for x in c]
        if isinstance(c, frozenset):
            items.sort(key=repr)
        return (type(c).__name__, tuple(items))
    if isinstance(c, (float, complex)):
        return (type(c).__name__, repr(c))
    return (type(c).__name__, c)


def structure(code: CodeType, memo: Optional[Dict[int, Tuple[Any, ...]]] = None) -> Tuple[Any, ...]:
    """A hashable key equal for behaviourally identical code objects."""
    if memo is None:
        memo = {}
    key = memo.get(id(code))
    if key is None:
        key = (
            code.co_name,
            code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
            code.co_flags, code.co_code, code.co_names, code.co_varnames,
            code.co_freevars, code.co_cellvars,
            getattr(code, "co_exceptiontable", b""),
            tuple(_const_key(c, memo) for c in code.co_consts),
        )
        memo[id(code)] = key
    return key


def kind(code: CodeType) -> int:
    return code.co_flags & _KIND_FLAGS


def is_named_function(code: CodeType) -> bool:
    """A ``def`` (not a class body, lambda or comprehension)."""
    return bool(code.co_flags & _CO_OPTIMIZED) and code.co_name.isidentifier()


def is_annotate(code: CodeType) -> bool:
    """Code the 3.14+ compiler makes for annotations (PEP 649): ``__annotate__(format, /)``.

    Not application code, and no name of its own: a module, each class and each annotated
    function get one, compiled into the *enclosing* body, all named ``__annotate__`` (a
    method's, ``C.__annotate__``, like its class's). Matching them by qualified name would
    pair the wrong ones and refuse any fix that adds an annotated function ("several
    definitions share this name and their number changed": aiohttp 3.9.2 and Werkzeug
    2.2.3 of the CVE corpus on 3.14). So the engine leaves them out of the code it
    matches and swaps; a function's changed annotations are carried by
    engine/_annotations.py.
    """
    return (code.co_name == "__annotate__" and code.co_posonlyargcount == 1
            and code.co_varnames[:1] == ("format",))


def walk(code: CodeType, qualname: str = "") -> Iterator[Tuple[str, CodeType]]:
    """Every code object nested in ``code`` with its qualified name, but annotation
    code (``is_annotate``).

    ``code`` is a module or class body; the names follow the compiler's rules:
    ``f.<locals>.g`` inside functions, ``C.m`` inside class bodies.
    """
    for c in code.co_consts:
        if not isinstance(c, CodeType) or is_annotate(c):
            continue
        q = code_qualname(c, qualname, code)
        yield q, c
        yield from walk(c, q)


def code_qualname(c: CodeType, parent_q: str, parent: Optional[CodeType]) -> str:
    if _HAS_QUALNAME:
        return c.co_qualname  # type: ignore[attr-defined, no-any-return]
    if not parent_q:
        return c.co_name
    if parent is not None and parent.co_flags & _CO_OPTIMIZED:
        return f"{parent_q}.<locals>.{c.co_name}"
    return f"{parent_q}.{c.co_name}"


def tree(module_code: CodeType) -> Dict[str, List[CodeType]]:
    """qualname -> code objects with that name, in source order."""
    out: Dict[str, List[CodeType]] = {}
    for q, c in walk(module_code):
        out.setdefault(q, []).append(c)
    return out


def live_qualnames(funcs: List[FunctionType]) -> Dict[int, str]:
    """id(code) -> qualname for the code of each function and everything nested in it.

    On 3.11+ the code carries its qualname. Before that, ``func.__qualname__``
    is what the compiler set unless someone assigned it (``functools.wraps``
    does, on wrappers); a name reached through a parent's constants wins, and a
    root whose ``__qualname__`` does not end in its code's name is left out.
    """
    out: Dict[int, str] = {}
    if _HAS_QUALNAME:
        for f in funcs:
            out[id(f.__code__)] = f.__code__.co_qualname  # type: ignore[attr-defined]
            for q, c in walk(f.__code__, f.__code__.co_qualname):  # type: ignore[attr-defined]
                out[id(c)] = q
        return out
    nested: Dict[int, str] = {}
    for f in funcs:
        q = f.__qualname__
        if q.rsplit(".", 1)[-1] != f.__code__.co_name:
            continue
        for nq, c in _walk_from(f.__code__, q):
            nested[id(c)] = nq
    for f in funcs:
        q = f.__qualname__
        if id(f.__code__) not in nested and q.rsplit(".", 1)[-1] == f.__code__.co_name:
            out[id(f.__code__)] = q
    out.update(nested)
    return out


def _walk_from(code: CodeType, q: str) -> Iterator[Tuple[str, CodeType]]:
    for c in code.co_consts:
        if isinstance(c, CodeType) and not is_annotate(c):
            nq = code_qualname(c, q, code)
            yield nq, c
            yield from _walk_from(c, nq)
