"""Stacked patches: B is built on A's fixed code and applies on top of it.

Reverting runs newest first; every revert restores exactly the code objects
(``is``) that were in place before the matching apply.
"""

from __future__ import annotations

import re

import pytest

from suture import runtime

V1 = '''
    def limit():
        return 1


    def check(n):
        return n <= limit()


    class Box:
        def describe(self):
            return "v1"
'''
V2 = V1.replace("return 1", "return 2").replace('"v1"', '"v2"')
V3 = V2.replace("return 2", "return 3").replace('"v2"', '"v3"').replace(
    "n <= limit()", "0 <= n <= limit()") + '''

    def audit():
        return "v3 audit"
'''

OTHER_V1 = {"tgt_other_mod.py": "def name():\n    return 'other v1'\n"}
OTHER_V2 = {"tgt_other_mod.py": "def name():\n    return 'other v2'\n"}

PRELUDE = r"""
import tgt_stack

def observe():
    return [tgt_stack.limit(), tgt_stack.check(-1), tgt_stack.Box().describe(),
            tgt_stack.audit() if hasattr(tgt_stack, "audit") else None]

def snap():
    return codes(tgt_stack)
"""

OBS = {1: [1, True, "v1", None], 2: [2, True, "v2", None], 3: [3, False, "v3", "v3 audit"]}


@pytest.fixture
def patches(ws):
    v1 = ws.tree("v1", {"tgt_stack.py": V1})
    v2 = ws.tree("v2", {"tgt_stack.py": V2})
    v3 = ws.tree("v3", {"tgt_stack.py": V3})
    return v1, ws.patch(v1, v2), ws.patch(v2, v3)


@pytest.mark.slow
def test_stacked_patches_revert_newest_first_and_restore_exactly(ws, patches):
    v1, a_path, b_path = patches
    a_id = runtime.load_patch(a_path.read_bytes()).short_id
    b_id = runtime.load_patch(b_path.read_bytes()).short_id
    got = ws.run(PRELUDE + r"""
a, b = load(ARGS["a"]), load(ARGS["b"])
out = {"v1": observe()}
c0 = snap()
out["apply_a"] = runtime.apply(a).state
out["after_a"] = observe()
ca = snap()
out["apply_b"] = runtime.apply(b).state
out["after_b"] = observe()
cb = snap()
again = runtime.apply(a)
out["apply_a_again"] = [again.state, again.ops, same_codes(cb, [tgt_stack])]
out["revert_a_first"] = refusal(runtime.revert, a.id)
out["after_refusal"] = [observe(), same_codes(cb, [tgt_stack]), runtime.applied() == [a.id, b.id]]
out["revert_b"] = runtime.revert(b.id).state
out["after_revert_b"] = [observe(), same_codes(ca, [tgt_stack]), runtime.applied() == [a.id]]
out["revert_a"] = runtime.revert(a.id).state
out["after_revert_a"] = [observe(), same_codes(c0, [tgt_stack]), runtime.applied()]
emit(out)
""", [v1], {"a": str(a_path), "b": str(b_path)})
    assert got["v1"] == OBS[1]
    assert (got["apply_a"], got["after_a"]) == ("applied", OBS[2])
    assert (got["apply_b"], got["after_b"]) == ("applied", OBS[3])
    assert got["apply_a_again"] == ["already applied", 0, True]
    err = got["revert_a_first"]
    assert err["code"] == "SUT-E301" and err["error"] == "RevertOrderError"
    assert re.match(
        rf"^Patch {a_id} cannot be reverted while newer patch {b_id} patches the same modules; "
        rf"revert that first \(`suture revert {b_id}`\)\. Nothing was changed\. \[SUT-E301\]$",
        err["message"]), err["message"]
    assert got["after_refusal"] == [OBS[3], True, True]
    assert (got["revert_b"], got["after_revert_b"]) == ("reverted", [OBS[2], True, True])
    assert (got["revert_a"], got["after_revert_a"]) == ("reverted", [OBS[1], True, []])


@pytest.mark.slow
def test_applying_the_same_patch_twice_reports_already_applied_and_changes_nothing(ws, patches):
    v1, a_path, _ = patches
    got = ws.run(PRELUDE + r"""
a = load(ARGS["a"])
first = runtime.apply(a)
ca = snap()
second = runtime.apply(load(ARGS["a"]))     # a fresh load of the same file: same id
emit({"states": [first.state, second.state], "ops": second.ops, "modules": second.modules,
      "same": same_codes(ca, [tgt_stack]), "applied": runtime.applied() == [a.id],
      "obs": observe()})
""", [v1], {"a": str(a_path)})
    assert got["states"] == ["applied", "already applied"]
    assert got["ops"] == 0 and got["modules"] == {"tgt_stack": "applied"}
    assert got["same"] is True and got["applied"] is True
    assert got["obs"] == OBS[2]


@pytest.mark.slow
def test_the_second_patch_alone_is_refused_on_the_first_version(ws, patches):
    v1, _, b_path = patches
    got = ws.run(PRELUDE + r"""
c0 = snap()
err = refusal(runtime.apply, load(ARGS["b"]))
emit({"err": err, "same": same_codes(c0, [tgt_stack]), "obs": observe(),
      "applied": runtime.applied()})
""", [v1], {"b": str(b_path)})
    assert got["err"]["code"] == "SUT-E201"
    assert got["same"] is True and got["obs"] == OBS[1] and got["applied"] == []


@pytest.mark.slow
def test_patches_of_different_modules_revert_in_any_order(ws):
    v1 = ws.tree("v1", dict({"tgt_stack.py": V1}, **OTHER_V1))
    a = ws.patch(v1, ws.tree("v2", dict({"tgt_stack.py": V2}, **OTHER_V1)))
    b = ws.patch(v1, ws.tree("v2_other", dict({"tgt_stack.py": V1}, **OTHER_V2)))
    got = ws.run(PRELUDE + r"""
import tgt_other_mod
a, b = load(ARGS["a"]), load(ARGS["b"])
runtime.apply(a)
runtime.apply(b)
both = [observe(), tgt_other_mod.name()]
first = refusal(runtime.revert, a.id)
emit({"both": both, "revert_a_first": first, "after": [observe(), tgt_other_mod.name()],
      "applied": runtime.applied() == [b.id]})
""", [v1], {"a": str(a), "b": str(b)})
    assert got["both"] == [OBS[2], "other v2"]
    assert got["revert_a_first"] is None
    assert got["after"] == [OBS[1], "other v2"]
    assert got["applied"] is True
