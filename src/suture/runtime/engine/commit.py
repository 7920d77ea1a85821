"""The only place that changes live objects: one atomic commit, one exact undo.

Why one C call. CPython switches threads only between bytecodes (at "eval
breaker" checks) or where C code releases the GIL. ``setattr``, ``delattr``
and ``operator.setitem`` on functions, classes and dicts are C and never
release the GIL. Chaining them with ``itertools.chain(map(...))`` and draining
the chain with ``collections.deque(..., maxlen=0)`` runs every change inside a
single C call: no bytecode of ours runs between two changes, so no other thread
can run Python code in between and see half a patch.

Rejected: raising ``sys.setswitchinterval`` around a Python loop. A thread that
was already waiting for the GIL keeps the old timeout and still forces a
switch, and if anything in the loop releases the GIL the committing thread can
wait the whole (huge) interval to get it back (FIELD-NOTES: 2 s stalls).

What can still run Python code inside the call, and so in principle let
another thread in: audit hooks written in Python (``object.__setattr__``), a
metaclass that defines ``__setattr__`` or ``mro`` in Python, and ``__del__``
of an evicted ``lru_cache`` entry. Old values are kept alive by the undo record,
so replacing them frees nothing. docs/engine.md lists these limits.
"""

from __future__ import annotations

import collections
import itertools
import operator
import time
from typing import Any, Iterable, List, Sequence, Tuple


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
_call = operator.methodcaller("__call__")


_CLASS_DICT = type.__dict__["__dict__"].__get__   # a class's own members (no metaclass code)


class Op:
    """One change: ``obj.key`` (kind "attr") or ``obj[key]`` (kind "item") from old to new."""

    __slots__ = ("kind", "obj", "key", "new", "old", "label")

    def __init__(self, kind: str, obj: Any, key: Any, new: Any, label: str = "") -> None:
        self.kind = kind
        self.obj = obj
        self.key = key
        self.new = new
        self.old = self.current()
        self.label = label

    def current(self) -> Any:
        if self.kind == "attr":
            if isinstance(self.obj, type):
                # the class's own member: an inherited one (a method the patch adds over
                # ``BaseException.__reduce__``) is no value to put back on revert; what
                # the metaclass defines (``__bases__``, ``__name__``) is read as it is
                own = _CLASS_DICT(self.obj)
                if self.key in own:
                    return own[self.key]
                meta = next((_CLASS_DICT(m)[self.key] for m in type.__dict__["__mro__"]
                             .__get__(type(self.obj)) if self.key in _CLASS_DICT(m)), None)
                if not hasattr(type(meta), "__set__"):   # no data descriptor of the metatype
                    return MISSING
            return getattr(self.obj, self.key, MISSING)
        if self.kind == "item":
            return self.obj.get(self.key, MISSING)
        return MISSING

    def __repr__(self) -> str:
        return f"Op({self.kind} {self.label or self.key})"


class Call:
    """A side effect with no value to restore (``cache_clear``); runs in the commit."""

    __slots__ = ("fn", "label")
    kind = "call"

    def __init__(self, fn: Any, label: str = "") -> None:
        self.fn = fn
        self.label = label


def _plan(pairs: Iterable[Tuple[Any, Any, Any, Any]]) -> Any:
    """pairs of (kind, obj, key, value) -> one lazy C-level iterator performing them."""
    groups: List[Any] = []
    for (kind, is_delete), group in itertools.groupby(
            pairs, key=lambda p: (p[0], p[3] is MISSING)):
        items = list(group)
        objs = [p[1] for p in items]
        keys = [p[2] for p in items]
        if kind == "call":
            groups.append(map(_call, objs))
        elif kind == "attr" and is_delete:
            groups.append(map(delattr, objs, keys))
        elif kind == "attr":
            groups.append(map(setattr, objs, keys, [p[3] for p in items]))
        elif is_delete:
            groups.append(map(operator.delitem, objs, keys))
        else:
            groups.append(map(operator.setitem, objs, keys, [p[3] for p in items]))
    return itertools.chain.from_iterable(groups)


def _forward(ops: List[Any]) -> Any:
    return _plan(("call", o.fn, None, None) if o.kind == "call" else (o.kind, o.obj, o.key, o.new)
                 for o in ops)


def _backward(ops: List[Any]) -> Any:
    return _plan((o.kind, o.obj, o.key, o.old) for o in reversed(ops) if o.kind != "call")


def run(ops: List[Any], undo_first: Sequence[Any] = ()) -> int:
    """Perform ``ops`` in one C call; returns the pause in nanoseconds.

    ``undo_first`` (the log of patches being replaced) is undone in the same
    call, before ``ops``. On any error, restores every op that had taken
    effect (judged by the current value, so it does not matter how far the
    chain got), re-applies ``undo_first``, and re-raises.
    """
    chain = itertools.chain(_backward(list(undo_first)), _forward(ops)) if undo_first \
        else _forward(ops)
    drain = collections.deque
    t0 = time.perf_counter_ns()
    try:
        drain(chain, maxlen=0)
    except BaseException:
        restore(ops)
        reapply(list(undo_first))
        raise
    return time.perf_counter_ns() - t0


def undo(ops: List[Any]) -> int:
    """Restore what ``ops`` changed, in one C call; returns the pause in nanoseconds."""
    chain = itertools.chain(_backward(ops), map(_call, [o.fn for o in ops if o.kind == "call"]))
    drain = collections.deque
    t0 = time.perf_counter_ns()
    try:
        drain(chain, maxlen=0)
    except BaseException:
        reapply(ops)
        raise
    return time.perf_counter_ns() - t0


def restore(ops: List[Any]) -> None:
    """Slow path after a failed commit: put back every op whose new value is in place."""
    for o in reversed(ops):
        if o.kind == "call":
            continue
        if o.current() is o.new and o.new is not o.old:
            _set(o, o.old)
    for o in ops:
        if o.kind == "call":
            try:
                o.fn()
            except Exception:  # a cache we could not clear only costs a recomputation
                pass


def reapply(ops: List[Any]) -> None:
    """Slow path after a failed undo: go back to the fully patched state."""
    for o in ops:
        if o.kind != "call" and o.current() is o.old and o.new is not o.old:
            _set(o, o.new)


def _set(o: Op, value: Any) -> None:
    if o.kind == "attr":
        if value is MISSING:
            delattr(o.obj, o.key)
        else:
            setattr(o.obj, o.key, value)
    else:
        if value is MISSING:
            del o.obj[o.key]
        else:
            o.obj[o.key] = value
