"""Reloads of patched modules, and status checking the live code (issue 16, situation 2).

In-process, in a fresh interpreter per test (``ws.run``): ``importlib.reload`` is served by
the import hook and patched again (stacked patches in turn); a re-import after
``del sys.modules[...]`` too; code the application brings back shows in ``status()`` as
"reverted by the application" (SUT-E211) and a new apply applies again; a reload of a file
that is no longer the baseline is refused and reported; revert ends on the baseline.
"""

from __future__ import annotations

import pytest

V1 = {"tgt_rel/__init__.py": '''
    LIMIT = 10

    def check(n):
        return n < LIMIT

    class Box:
        def describe(self):
            return "box v1"
'''}
V2 = {"tgt_rel/__init__.py": V1["tgt_rel/__init__.py"].replace("n < LIMIT", "0 <= n < LIMIT")}
V3 = {"tgt_rel/__init__.py": V2["tgt_rel/__init__.py"].replace('"box v1"', '"box v3"')}

OBSERVE = r"""
import importlib
import tgt_rel
from tgt_rel import check as alias

def observe():
    return [tgt_rel.check(-1), alias(-1), tgt_rel.Box().describe()]

def live():
    return [p["live"] for p in runtime.status()["patches"]]
"""


@pytest.mark.slow
def test_reload_is_patched_again_by_stacked_patches_and_revert_ends_on_the_baseline(ws):
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    a, b = ws.patch(v1, v2), ws.patch(v2, ws.tree("v3", V3))
    got = ws.run(OBSERVE + r"""
a, b = load(ARGS["a"]), load(ARGS["b"])
out = {"states": [runtime.apply(a).state, runtime.apply(b).state], "applied": observe()}
importlib.reload(tgt_rel)
out["reloaded"] = [observe(), live(), [p["modules"] for p in runtime.status()["patches"]]]
del sys.modules["tgt_rel"]
import tgt_rel
out["reimported"] = [observe(), live()]
out["reverted"] = [runtime.revert(b.id).state, runtime.revert(a.id).state, observe(),
                   _hook.installed()]
emit(out)
""", [v1], {"a": str(a), "b": str(b)})
    assert got["states"] == ["applied", "applied"]
    assert got["applied"] == [False, False, "box v3"]
    assert got["reloaded"] == [[False, False, "box v3"],
                               [{"tgt_rel": "verified"}, {"tgt_rel": "verified"}],
                               [{"tgt_rel": "applied"}, {"tgt_rel": "applied"}]]
    assert got["reimported"] == [[False, False, "box v3"],
                                 [{"tgt_rel": "verified"}, {"tgt_rel": "verified"}]]
    assert got["reverted"] == ["reverted", "reverted", [True, True, "box v1"], False]


@pytest.mark.slow
def test_code_set_back_is_reverted_by_the_application_and_apply_applies_again(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
told = []
engine.on_reverted(lambda *args: told.append(list(args)))
out = {"applied": [runtime.apply(patch).state, observe(), live()]}
baseline = compile("def check(n):\n    return n < LIMIT\n", tgt_rel.__file__, "exec")
tgt_rel.check.__code__ = [c for c in baseline.co_consts if hasattr(c, "co_code")][0]
out["set_back"] = [observe(), live(), live()]
again = runtime.apply(patch)
out["again"] = [again.state, again.notes, observe(), live()]
out["already"] = runtime.apply(patch).state
tgt_rel.check = lambda n: True     # rebound to other code
out["rebound"] = live()
out["told"] = told
out["reverted"] = [runtime.revert(patch.id).state, alias(-1)]
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["applied"] == ["applied", [False, False, "box v1"], [{"tgt_rel": "verified"}]]
    observed, [first], [second] = got["set_back"]
    assert observed == [True, True, "box v1"]     # the alias is the same function object
    assert first == second == {"tgt_rel": "reverted by the application (SUT-E211): check's "
                                          "__code__ was replaced by code the patch did not "
                                          "install"}
    state, notes, observed, verified = got["again"]
    assert state == "applied" and observed == [False, False, "box v1"], got["again"]
    assert verified == [{"tgt_rel": "verified"}]
    assert notes == ["applied again to tgt_rel, which was reverted by the application: check's "
                     "__code__ was replaced by code the patch did not install"]
    assert got["already"] == "already applied"
    assert got["rebound"] == [{"tgt_rel": "reverted by the application (SUT-E211): check is "
                                          "bound to another object than the fixed function"}]
    # told once per finding, though status was asked several times
    assert [t[0] for t in got["told"]] == ["tgt_rel", "tgt_rel"]
    assert {t[2] for t in got["told"]} == {"SUT-E211"}
    assert got["reverted"] == ["reverted", True]


@pytest.mark.slow
def test_reload_of_a_file_that_is_no_longer_the_baseline_is_refused_and_reported(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
told = []
engine.on_import_refused(lambda *args: told.append(list(args)))
runtime.apply(patch)
with open(tgt_rel.__file__, "a") as f:
    f.write("\ndef extra():\n    return 1\n\ndef check(n):\n    return 'edited'\n")
importlib.reload(tgt_rel)
emit({"observed": tgt_rel.check(-1), "modules": runtime.status()["patches"][0]["modules"],
      "live": live(), "told": [t[0] for t in told]})
""", [v1], {"patch": str(patch)})
    assert got["observed"] == "edited"
    assert got["modules"]["tgt_rel"].startswith("refused at reload: "), got["modules"]
    assert got["live"] == [{}]
    assert got["told"] == ["tgt_rel"]


@pytest.mark.slow
def test_module_state_set_back_to_the_baselines_is_reverted_by_the_application(ws):
    # The fix lowers a module-level limit; the functions keep their fixed code, but the
    # application (or a reload behind another finder that only touched data) puts the
    # baseline's value back: the process runs the vulnerable behaviour again.
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", {"tgt_rel/__init__.py": V1["tgt_rel/__init__.py"]
                                        .replace("LIMIT = 10", "LIMIT = 5")}), state=True)
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
out = {"applied": [runtime.apply(patch).state, tgt_rel.check(7), live()]}
tgt_rel.LIMIT = 10
out["set_back"] = [tgt_rel.check(7), live()]
try:
    runtime.apply(patch)
    out["again"] = "applied"
except runtime.RefusedError as exc:
    out["again"] = [exc.code, str(exc), tgt_rel.check(7), live()]
tgt_rel.LIMIT = 5          # set right by hand
out["by_hand"] = live()
tgt_rel.LIMIT = 6          # the application's own run-time value: neither release's
out["own"] = live()
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["applied"] == ["applied", False, [{"tgt_rel": "verified"}]]
    observed, [live] = got["set_back"]
    assert observed is True
    assert live == {"tgt_rel": "reverted by the application (SUT-E211): module state is the "
                               "baseline's again where the fix changed it: LIMIT"}, live
    # applying again cannot make that change twice: refused, never a false "applied"
    code, message, observed, live = got["again"]
    assert code == "SUT-E211" and "still runs it" in message, message
    assert observed is True and "LIMIT" in live[0]["tgt_rel"]
    assert got["by_hand"] == [{"tgt_rel": "verified"}]
    assert got["own"] == [{"tgt_rel": "verified"}]
