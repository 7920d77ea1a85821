"""Hooks (pre/post apply and revert), MIGRATIONS and shadow data.

A hook that refuses before the commit, or a migration that fails, leaves the
process as it was; a post_apply hook that fails rolls the whole patch back.
"""

from __future__ import annotations

import gc
import re
import weakref

import pytest

from suture import runtime
from suture.runtime.engine import _state

V1 = {"tgt_hooked.py": '''
    CALLS = []
    RATE = 1


    def price(n):
        return n * RATE


    def legacy():
        return "legacy"


    class Cart:
        TAX = 0

        def __init__(self, owner):
            self.owner = owner
            self.items = []

        def total(self):
            return sum(self.items)
'''}

V2 = {"tgt_hooked.py": '''
    CALLS = []
    RATE = 1
    CURRENCY = "EUR"


    def _round(x):
        return round(x, 2)


    def price(n):
        return _round(n * RATE)


    class Cart:
        TAX = 0
        DISCOUNT = 0

        def __init__(self, owner):
            self.owner = owner
            self.items = []
            self.currency = CURRENCY

        def total(self):
            return sum(self.items) * (1 - self.DISCOUNT)

        def describe(self):
            return "%s: %s %s" % (self.owner, self.total(), self.currency)
'''}

STATE = r"""
import tgt_hooked

carts = [tgt_hooked.Cart("c%d" % i) for i in range(10)]
for i, c in enumerate(carts):
    c.items.append(i)

def observe():
    return [tgt_hooked.price(1.234), carts[3].total(), hasattr(carts[3], "currency"),
            hasattr(tgt_hooked, "legacy"), hasattr(tgt_hooked.Cart, "describe")]

def _same(now, before):
    return now.keys() == before.keys() and all(now[k] is v for k, v in before.items())

def state():
    return {"codes": codes(tgt_hooked), "module": dict(vars(tgt_hooked)),
            "cls": dict(vars(tgt_hooked.Cart)), "dicts": [(vars(c), dict(vars(c))) for c in carts]}

def unchanged(before):
    now = state()
    return {"codes": same_codes(before["codes"], [tgt_hooked]),
            "module": _same(now["module"], before["module"]),
            "cls": _same(now["cls"], before["cls"]),
            "instances": all(vars(c) is d and _same(vars(c), snap)
                             for c, (d, snap) in zip(carts, before["dicts"])),
            "applied": runtime.applied(), "hook": _hook.installed()}

NOTHING_CHANGED = {"codes": True, "module": True, "cls": True, "instances": True,
                   "applied": [], "hook": False}
V1_OBS = [1.234, 3, False, True, False]

def attempt():
    before_obs, before = observe(), state()
    err = refusal(runtime.apply, load(ARGS["patch"]))
    return {"err": err, "check": unchanged(before), "obs": [before_obs, observe()],
            "calls": list(tgt_hooked.CALLS)}
"""


def _attempt(ws, hooks: str):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2), hooks=hooks)
    got = ws.run(STATE + "emit(dict(attempt(), expected=NOTHING_CHANGED, v1=V1_OBS))\n", [v1],
                 {"patch": str(patch)})
    assert got["check"] == got["expected"]
    assert got["obs"] == [got["v1"], got["v1"]]
    assert got["err"] is not None, "apply did not fail"
    return got


@pytest.mark.slow
def test_pre_apply_raising_refuses_the_patch_and_changes_nothing(ws):
    got = _attempt(ws, '''
        def pre_apply(ctx):
            ctx.module("tgt_hooked").CALLS.append("pre_apply")
            raise RuntimeError("maintenance window closed")
    ''')
    err = got["err"]
    assert (err["code"], err["error"], err["cause"]) == ("SUT-E205", "HookFailed", "RuntimeError")
    assert re.match(r"^pre_apply hook of patch [0-9a-f]{12} refused: RuntimeError: maintenance "
                    r"window closed\. Nothing was changed\. \[SUT-E205\]$", err["message"])
    assert got["calls"] == ["pre_apply"]


@pytest.mark.slow
def test_post_apply_raising_rolls_back_code_module_class_and_migrated_instances(ws):
    got = _attempt(ws, '''
        def _migrate(cart):
            cart.currency = "EUR"
            cart.owner = cart.owner.upper()


        MIGRATIONS = {"tgt_hooked:Cart": _migrate}


        def post_apply(ctx):
            m = ctx.module("tgt_hooked")
            m.CALLS.append(["post_apply", m.price(1.234), m.Cart("new").describe()])
            raise RuntimeError("smoke test failed")
    ''')
    err = got["err"]
    assert (err["code"], err["error"], err["cause"]) == ("SUT-E400", "RolledBack", "RuntimeError")
    assert re.match(r"^post_apply hook of patch [0-9a-f]{12} failed; the patch was rolled back: "
                    r"RuntimeError: smoke test failed \[SUT-E400\]$", err["message"])
    # the hook really ran on the patched code before the rollback
    assert got["calls"] == [["post_apply", 1.23, "new: 0 EUR"]]


@pytest.mark.slow
def test_migration_failing_halfway_restores_every_instance_dict(ws):
    got = _attempt(ws, '''
        import sys


        def _migrate(cart):
            calls = sys.modules["tgt_hooked"].CALLS
            calls.append(cart.owner)
            cart.currency = "EUR"
            cart.owner = cart.owner.upper()
            cart.items = []
            if len(calls) == 6:
                raise ValueError("cannot price cart %s" % cart.owner)


        MIGRATIONS = {"tgt_hooked:Cart": _migrate}
    ''')
    err = got["err"]
    assert (err["code"], err["error"], err["cause"]) == ("SUT-E205", "HookFailed", "ValueError")
    assert re.match(r"^Migration of Cart instances failed in patch [0-9a-f]{12}: ValueError: "
                    r"cannot price cart C\d\. Every migrated instance's attributes were restored "
                    r"and the patch was not applied \(what a migration changed inside the "
                    r"objects those attributes refer to, such as a list\.append, is not "
                    r"undone\)\. \[SUT-E205\]$", err["message"]), err["message"]
    assert len(got["calls"]) == 6  # it did fail halfway through the ten instances


@pytest.mark.slow
def test_hooks_that_fail_to_load_refuse_the_patch(ws):
    got = _attempt(ws, '''
        import tgt_no_such_module
    ''')
    err = got["err"]
    assert (err["code"], err["error"]) == ("SUT-E205", "HookFailed")
    assert re.match(r"^The hooks of patch [0-9a-f]{12} failed to load: ModuleNotFoundError: "
                    r"No module named 'tgt_no_such_module'\. Nothing was changed\. "
                    r"\[SUT-E205\]$", err["message"]), err["message"]


LOGGING_HOOKS = '''
    def _log(ctx, name):
        m = ctx.module("tgt_hooked")
        m.CALLS.append("%s:%s" % (name, m.price(1.234)))


    def _migrate(cart):
        cart.currency = "GBP"


    MIGRATIONS = {"tgt_hooked:Cart": _migrate}


    def pre_apply(ctx):
        _log(ctx, "pre_apply")


    def post_apply(ctx):
        _log(ctx, "post_apply")


    def pre_revert(ctx):
        _log(ctx, "pre_revert")
        if ctx.module("tgt_hooked").RATE == 2:
            raise RuntimeError("RATE was changed by hand")


    def post_revert(ctx):
        _log(ctx, "post_revert")
        if ctx.module("tgt_hooked").RATE == 3:
            raise RuntimeError("post_revert cannot clean up")
'''


@pytest.mark.slow
def test_hooks_run_in_order_around_apply_and_revert(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2), hooks=LOGGING_HOOKS)
    got = ws.run(STATE + r"""
p = load(ARGS["patch"])
out = {"apply": runtime.apply(p).state, "migrated": [carts[0].currency, carts[9].describe()]}
out["revert"] = runtime.revert(p.id).state
out["calls"] = list(tgt_hooked.CALLS)
out["obs"] = observe()
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["apply"] == "applied" and got["revert"] == "reverted"
    assert got["migrated"] == ["GBP", "c9: 9 GBP"]
    assert got["calls"] == ["pre_apply:1.234", "post_apply:1.23", "pre_revert:1.23",
                            "post_revert:1.234"]
    assert got["obs"][:2] == [1.234, 3]


@pytest.mark.slow
def test_pre_revert_raising_keeps_the_patch_and_post_revert_raising_is_reported(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2), hooks=LOGGING_HOOKS)
    got = ws.run(STATE + r"""
p = load(ARGS["patch"])
runtime.apply(p)
patched = state()
tgt_hooked.RATE = 2
out = {"pre_revert": refusal(runtime.revert, p.id)}
tgt_hooked.RATE = 1
out["kept"] = [unchanged(patched), tgt_hooked.price(1.234)]
tgt_hooked.RATE = 3
result = runtime.revert(p.id)
tgt_hooked.RATE = 1
out["post_revert"] = [result.state, result.notes, runtime.applied(), tgt_hooked.price(1.234)]
emit(out)
""", [v1], {"patch": str(patch)})
    err = got["pre_revert"]
    assert (err["code"], err["error"]) == ("SUT-E205", "HookFailed")
    assert re.match(r"^pre_revert hook of patch [0-9a-f]{12} refused: RuntimeError: RATE was "
                    r"changed by hand\. Nothing was changed\. \[SUT-E205\]$", err["message"])
    kept, price = got["kept"]
    assert kept["codes"] and kept["module"] and kept["cls"] and kept["instances"]
    assert len(kept["applied"]) == 1 and price == 1.23
    state, notes, applied, price = got["post_revert"]
    assert (state, applied, price) == ("reverted", [], 1.234)
    assert notes == ["post_revert hook failed after the code was restored: "
                     "RuntimeError('post_revert cannot clean up')"]


SLOTTED_V1 = {"tgt_tokens.py": '''
    class Token:
        __slots__ = ("value",)

        def __init__(self, value):
            self.value = value

        def valid(self):
            return bool(self.value)
'''}

SLOTTED_V2 = {"tgt_tokens.py": '''
    from suture.runtime import shadow


    class Token:
        __slots__ = ("value",)

        def __init__(self, value):
            self.value = value
            shadow(self)["uses"] = 0

        def valid(self):
            data = shadow(self)
            data["uses"] += 1
            return bool(self.value) and data["uses"] <= 2
'''}


@pytest.mark.slow
def test_a_migration_gives_slotted_instances_shadow_data(ws):
    v1 = ws.tree("v1", SLOTTED_V1)
    patch = ws.patch(v1, ws.tree("v2", SLOTTED_V2), hooks='''
        from suture.runtime import shadow


        def _migrate(token):
            shadow(token)["uses"] = 1


        MIGRATIONS = {"tgt_tokens:Token": _migrate}
    ''')
    got = ws.run(r"""
import tgt_tokens
old = tgt_tokens.Token("abc")
before = [old.valid(), old.valid(), old.valid()]
runtime.apply(load(ARGS["patch"]))
new = tgt_tokens.Token("xyz")
emit({"before": before, "old": [old.valid(), old.valid()], "new": [new.valid() for _ in range(3)],
      "layout": [hasattr(old, "__dict__"), tgt_tokens.Token.__slots__]})
""", [v1], {"patch": str(patch)})
    assert got["before"] == [True, True, True]
    assert got["old"] == [True, False]        # migrated with one use already counted
    assert got["new"] == [True, True, False]
    assert got["layout"] == [False, ["value"]]


@pytest.mark.slow
def test_migration_failing_halfway_restores_slotted_instances_too(ws):
    # "Every migrated instance was restored": slot values as well as __dict__ entries.
    v1 = ws.tree("v1", SLOTTED_V1)
    patch = ws.patch(v1, ws.tree("v2", SLOTTED_V2), hooks='''
        SEEN = []


        def _migrate(token):
            SEEN.append(token.value)
            token.value = token.value.upper()
            if len(SEEN) == 3:
                raise ValueError("token store offline")


        MIGRATIONS = {"tgt_tokens:Token": _migrate}
    ''')
    got = ws.run(r"""
import tgt_tokens
tokens = [tgt_tokens.Token("t%d" % i) for i in range(6)]
values = [t.value for t in tokens]
err = refusal(runtime.apply, load(ARGS["patch"]))
emit({"err": err and err["code"], "same": all(t.value is v for t, v in zip(tokens, values)),
      "now": [t.value for t in tokens]})
""", [v1], {"patch": str(patch)})
    assert got["err"] == "SUT-E205"
    assert got["now"] == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert got["same"] is True


# -- shadow() itself: no target code involved, in-process ------------------------------

class _Slotted:
    __slots__ = ("a",)


class _SlottedWeak:
    __slots__ = ("a", "__weakref__")


def test_shadow_attaches_data_to_an_object_with_slots_and_no_weakref():
    obj = _Slotted()
    other = _Slotted()
    try:
        data = runtime.shadow(obj)
        data["issued"] = 42
        assert runtime.shadow(obj) is data
        assert runtime.shadow(other) is not data and runtime.shadow(other) == {}
        assert not hasattr(obj, "__dict__")
        with pytest.raises(AttributeError):
            obj.issued = 1  # the layout really is closed
        runtime.drop_shadow(obj)
        assert runtime.shadow(obj) == {}
    finally:
        runtime.drop_shadow(obj)
        runtime.drop_shadow(other)


def test_shadow_of_a_weakly_referenceable_object_dies_with_it():
    before = len(_state._shadows)
    obj = _SlottedWeak()
    runtime.shadow(obj)["x"] = 1
    ref = weakref.ref(obj)
    assert len(_state._shadows) == before + 1
    del obj
    gc.collect()
    assert ref() is None
    assert len(_state._shadows) == before


def test_hook_context_shadow_is_the_same_data():
    obj = _Slotted()
    try:
        ctx = _state.HookContext.__new__(_state.HookContext)
        assert ctx.shadow(obj) is runtime.shadow(obj)
    finally:
        runtime.drop_shadow(obj)
