"""Unit tests of suture.runtime.engine.commit: one atomic commit, one exact undo.

Only plain objects made here are changed (no module is imported or patched),
so these tests run in-process.
"""

from __future__ import annotations

import itertools
import operator
import sys
import time
import types

import pytest

from suture.runtime.engine import commit as _commit
from suture.runtime.engine.commit import MISSING, Call, Op


def _f():
    return "f"


def _g():
    return "g"


class _Slotted:
    __slots__ = ("a",)


class _Refusing:
    """setattr raises once ``locked`` is set: an object that refuses in the middle."""

    locked = False

    def __setattr__(self, name, value):
        if type(self).locked:
            raise PermissionError(f"{name} is locked")
        object.__setattr__(self, name, value)


def _world():
    """Fresh objects of every kind an op can touch, and the values they start with."""
    func = types.FunctionType(_f.__code__, {"__name__": "w"}, "func")
    cls = type("Cls", (), {"x": 1, "gone": "here", "method": lambda self: "old"})
    d = {"a": 1, "b": [2], "dropped": object()}
    mod = types.ModuleType("tgt_commit_world")
    mod.value = "v1"
    return {"func": func, "cls": cls, "dict": d, "mod": mod}


def _ops(w):
    new_code = _g.__code__
    return [
        Op("attr", w["func"], "__code__", new_code, "code"),
        Op("attr", w["func"], "__defaults__", (1, 2), "defaults"),
        Op("attr", w["cls"], "x", 2, "cls.x"),
        Op("attr", w["cls"], "added", "new", "cls.added"),
        Op("attr", w["cls"], "gone", MISSING, "del cls.gone"),
        Op("attr", w["cls"], "method", lambda self: "new", "cls.method"),
        Op("item", w["dict"], "a", 10, "d[a]"),
        Op("item", w["dict"], "c", 30, "d[c]"),
        Op("item", w["dict"], "dropped", MISSING, "del d[dropped]"),
        Op("attr", w["mod"], "value", "v2", "mod.value"),
    ]


def _state(w):
    """Everything the ops may touch, by identity where identity matters."""
    return (w["func"].__code__, w["func"].__defaults__, dict(vars(w["cls"])), dict(w["dict"]),
            dict(vars(w["mod"])))


def _same(a, b):
    """Two _state()s hold the very same objects."""
    def same_dict(x, y):
        return x.keys() == y.keys() and all(x[k] is y[k] for k in x)
    return (a[0] is b[0] and a[1] is b[1] and same_dict(a[2], b[2]) and same_dict(a[3], b[3])
            and same_dict(a[4], b[4]))


def test_run_then_undo_restores_exactly_the_same_objects():
    w = _world()
    before = _state(w)
    ops = _ops(w)
    _commit.run(ops)
    assert w["func"]() == "g" and w["func"].__defaults__ == (1, 2)
    assert (w["cls"].x, w["cls"].added, hasattr(w["cls"], "gone")) == (2, "new", False)
    assert w["cls"]().method() == "new"
    assert w["dict"] == {"a": 10, "b": [2], "c": 30}
    assert w["mod"].value == "v2"
    assert all(o.current() is o.new for o in ops)
    _commit.undo(ops)
    assert _same(_state(w), before)
    assert w["func"]() == "f" and w["cls"]().method() == "old"
    assert "added" not in vars(w["cls"]) and "c" not in w["dict"]


def test_run_then_undo_twice_round_trips():
    w = _world()
    before = _state(w)
    ops = _ops(w)
    for _ in range(2):
        _commit.run(ops)
        after = _state(w)
        _commit.undo(ops)
        assert _same(_state(w), before)
    _commit.run(ops)
    assert _same(_state(w), after)


@pytest.mark.parametrize("where", [0, 3, 9, 10])
def test_incompatible_bases_in_the_middle_leave_everything_as_before(where):
    w = _world()
    before = _state(w)

    class Plain:
        pass

    bases = Plain.__bases__
    ops = _ops(w)
    ops.insert(where, Op("attr", Plain, "__bases__", (int,), "Plain.__bases__"))
    with pytest.raises(TypeError, match=r"__bases__ assignment"):
        _commit.run(ops)
    assert _same(_state(w), before)
    assert Plain.__bases__ is bases


@pytest.mark.parametrize("refuser", ["slots", "setattr", "builtin", "missing key"])
def test_an_op_that_refuses_in_the_middle_leaves_everything_as_before(refuser):
    w = _world()
    before = _state(w)
    bad = {
        "slots": Op("attr", _Slotted(), "b", 1, "slotted.b"),
        "setattr": Op("attr", _Refusing(), "x", 1, "refusing.x"),
        "builtin": Op("attr", 1, "real", 2, "int.real"),
        "missing key": Op("item", {}, "k", MISSING, "del {}[k]"),
    }[refuser]
    if refuser == "missing key":
        bad.old = "pretend it was there"  # so the delete is really attempted, and fails
    _Refusing.locked = True
    try:
        ops = _ops(w)
        ops.insert(6, bad)
        with pytest.raises((AttributeError, PermissionError, KeyError)):
            _commit.run(ops)
    finally:
        _Refusing.locked = False
    assert _same(_state(w), before)


def test_calls_run_in_place_on_commit_and_after_every_restore_on_undo():
    w = _world()
    seen = []
    ops = [Op("item", w["dict"], "a", 10), Call(lambda: seen.append(w["dict"]["a"]), "look"),
           Op("item", w["dict"], "a", 20)]
    # the second op was created before the first ran: both restore to the original value
    _commit.run(ops)
    assert seen == [10] and w["dict"]["a"] == 20
    _commit.undo(ops)
    assert seen == [10, 1] and w["dict"]["a"] == 1


def test_a_failing_undo_goes_back_to_the_fully_patched_state():
    w = _world()
    victim = _Refusing()
    victim.x = "old"
    ops = _ops(w)
    ops.insert(5, Op("attr", victim, "x", "new"))
    _commit.run(ops)
    patched = _state(w)
    _Refusing.locked = True
    try:
        with pytest.raises(PermissionError):
            _commit.undo(ops)
    finally:
        _Refusing.locked = False
    assert _same(_state(w), patched)
    assert victim.x == "new"


def test_undo_first_is_undone_in_the_same_commit_and_put_back_on_failure():
    w = _world()
    before = _state(w)
    first = [Op("item", w["dict"], "a", 10), Op("attr", w["mod"], "value", "v2")]
    _commit.run(first)
    after_first = _state(w)
    second = [Op("item", w["dict"], "c", 30), Op("attr", w["cls"], "x", 3)]
    failing = second + [Op("attr", 1, "real", 2)]
    with pytest.raises(AttributeError):
        _commit.run(failing, first)
    assert _same(_state(w), after_first)
    _commit.run(second, first)
    assert w["dict"]["a"] == 1 and w["mod"].value == "v1"
    assert w["dict"]["c"] == 30 and w["cls"].x == 3
    _commit.undo(second)
    assert _same(_state(w), before)


def test_pause_is_returned_in_nanoseconds():
    w = _world()
    ops = [Op("item", w["dict"], "a", 10), Call(lambda: time.sleep(0.02), "sleep")]
    t0 = time.perf_counter_ns()
    pause = _commit.run(ops)
    outer = time.perf_counter_ns() - t0
    assert isinstance(pause, int)
    assert 20_000_000 <= pause <= outer < 10 ** 9
    t0 = time.perf_counter_ns()
    pause = _commit.undo(ops)
    outer = time.perf_counter_ns() - t0
    assert 20_000_000 <= pause <= outer < 10 ** 9


def test_no_python_line_runs_while_the_ops_are_half_done():
    # A trace function sees every Python line executed during run/undo, ours or
    # anybody's. At each of them the 100 targets must be all old or all new:
    # a commit written as a Python loop would show a mix at its loop lines.
    funcs = [types.FunctionType(_f.__code__, {}, f"f{i}") for i in range(100)]
    ops = [Op("attr", fn, "__code__", _g.__code__) for fn in funcs]
    seen = set()
    get_code, new = operator.attrgetter("__code__"), itertools.repeat(_g.__code__)

    def tracer(frame, event, arg):
        n_new = sum(map(operator.is_, map(get_code, funcs), new))
        seen.add("old" if n_new == 0 else "new" if n_new == len(funcs) else f"mixed {n_new}")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        _commit.run(ops)
        _commit.undo(ops)
    finally:
        sys.settrace(previous)
    assert seen == {"old", "new"}


def test_a_member_added_over_an_inherited_one_is_deleted_by_undo():
    # A method a patch adds to a class that inherits one of that name (requests 2.32's
    # JSONDecodeError.__reduce__): undo must leave the class as it was, inheriting it,
    # not hold the inherited method as its own (found by the build's whole-process dry run).
    class Error(ValueError):
        pass

    def __reduce__(self):
        return ValueError.__reduce__(self)

    op = Op("attr", Error, "__reduce__", __reduce__)
    assert op.old is MISSING
    _commit.run([op])
    assert Error.__dict__["__reduce__"] is __reduce__
    _commit.undo([op])
    assert "__reduce__" not in Error.__dict__
    # what the metaclass itself defines (a data descriptor of type) is read as it is
    bases = Op("attr", Error, "__bases__", (ValueError,))
    assert bases.old == (ValueError,)
    doc = Op("attr", Error, "__doc__", "new")
    assert doc.old is None and "__doc__" in Error.__dict__
