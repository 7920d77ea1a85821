"""Patches for modules the process has not imported yet, and modules a patch adds.

The import hook is inserted by the apply that leaves a module pending, and removed as
soon as nothing is pending, added or patched in place (it also serves reloads of
patched modules, issue 16: it stays after the import, until the revert).
"""

from __future__ import annotations

import re

import pytest

V1 = {
    "tgt_lazy/__init__.py": '"""Greetings (loaded lazily)."""\n',
    "tgt_lazy/core.py": '''
        def greet(name):
            return "hello " + name


        class Greeter:
            def greet(self, name):
                return greet(name).upper()
    ''',
    "tgt_other.py": "VALUE = 1\n",
}
V2 = dict(V1, **{"tgt_lazy/core.py": V1["tgt_lazy/core.py"].replace(
    '"hello " + name', '"hello " + name.strip()')})
V2_ADDS = dict(V1, **{"tgt_lazy/extra.py": '''
    def shout(text):
        return text.upper() + "!"
'''})

OBSERVE = r"""
def observe():
    import tgt_lazy.core as core
    return [core.greet(" ann "), core.Greeter().greet(" bob ")]

def hook_state():
    return {"installed": _hook.installed(), "meta_path_same": sys.meta_path == META_BEFORE}

META_BEFORE = list(sys.meta_path)
"""

V1_OUT = ["hello  ann ", "HELLO  BOB "]
V2_OUT = ["hello ann", "HELLO BOB"]


@pytest.mark.slow
def test_patch_applied_before_import_is_applied_when_the_module_is_imported(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
out = {}
result = runtime.apply(patch)
out["result"] = [result.state, result.modules]
out["pending"] = [hook_state(), sys.meta_path[0] is _hook._finder, "tgt_lazy.core" in sys.modules]
out["declines"] = [_hook._finder.find_spec("tgt_other", None), _hook._finder.find_spec("json", None)]
import tgt_other
out["other"] = tgt_other.VALUE
out["fixed"] = observe()
import tgt_lazy.core as core
out["loader"] = [type(core.__loader__).__name__, type(core.__spec__.loader).__name__]
out["status_after_import"] = runtime.status()["patches"][0]["modules"]
out["hook_after_import"] = hook_state()
out["reverted"] = [runtime.revert(patch.id).state, observe(),
                   core.greet.__code__.co_filename == core.__file__, hook_state()]
out["reapplied"] = [runtime.apply(patch).state, observe(), hook_state()]
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["result"] == ["pending import", {"tgt_lazy.core": "pending import"}]
    assert got["pending"] == [{"installed": True, "meta_path_same": False}, True, False]
    assert got["declines"] == [None, None]
    assert got["other"] == 1
    assert got["fixed"] == V2_OUT
    assert got["loader"] == ["SourceFileLoader", "SourceFileLoader"]  # our wrapper is gone
    assert got["status_after_import"] == {"tgt_lazy.core": "applied"}
    # the hook stays while the module is patched: it serves a reload of it (issue 16),
    # and leaves with the revert
    assert got["hook_after_import"] == {"installed": True, "meta_path_same": False}
    assert got["reverted"] == ["reverted", V1_OUT, True,
                               {"installed": False, "meta_path_same": True}]
    assert got["reapplied"] == ["applied", V2_OUT, {"installed": True, "meta_path_same": False}]


@pytest.mark.slow
def test_reverting_a_pending_patch_removes_the_hook_and_imports_the_original(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
runtime.apply(patch)
installed = hook_state()
result = runtime.revert(patch.id)
emit({"installed": installed, "revert": [result.state, result.modules], "after": hook_state(),
      "observed": observe(), "patches": runtime.status()["patches"]})
""", [v1], {"patch": str(patch)})
    assert got["installed"] == {"installed": True, "meta_path_same": False}
    assert got["revert"] == ["reverted", {"tgt_lazy.core": "reverted"}]
    assert got["after"] == {"installed": False, "meta_path_same": True}
    assert got["observed"] == V1_OUT
    assert got["patches"] == []


@pytest.mark.slow
@pytest.mark.parametrize("embed", [True, False], ids=["whole sources", "compact"])
def test_a_pending_module_that_no_longer_matches_is_imported_unpatched_and_reported(ws, embed):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2), embed=embed)
    edited = ws.tree("v1_edited", dict(V1, **{"tgt_lazy/core.py": V1["tgt_lazy/core.py"]
                                              .replace(".upper()", ".title()")}))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
runtime.apply(patch)
observed = observe()       # the import itself must not raise
emit({"observed": observed, "modules": runtime.status()["patches"][0]["modules"],
      "hook": hook_state()})
""", [edited], {"patch": str(patch)})
    assert got["observed"] == ["hello  ann ", "Hello  Bob "]
    (state,) = got["modules"].values()
    # whole sources name the function that differs; a compact patch knows the file differs
    why = r"`tgt_lazy\.core:Greeter\.greet` differs " if embed else r"its source file \("
    assert re.match(r"^refused at import: Refused patch [0-9a-f]{12} \(v2\): tgt_lazy\.core "
                    r"does not match the baseline: " + why, state), state
    assert got["hook"] == {"installed": False, "meta_path_same": True}


@pytest.mark.slow
def test_a_module_added_by_the_patch_is_importable_until_revert(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2_ADDS))
    got = ws.run(OBSERVE + r"""
import importlib
patch = load(ARGS["patch"])
out = {}
result = runtime.apply(patch)
out["result"] = [result.state, result.modules]
out["hook"] = hook_state()
import tgt_lazy.extra
out["added"] = [tgt_lazy.extra.shout("hi"), tgt_lazy.extra.__file__,
                tgt_lazy.extra.__file__ == tgt_lazy.extra.shout.__code__.co_filename]
import tgt_lazy
out["parent_attr"] = tgt_lazy.extra is sys.modules["tgt_lazy.extra"]
out["status"] = runtime.status()["patches"][0]["modules"]
out["hook_while_applied"] = hook_state()
runtime.revert(patch.id)
out["gone"] = ["tgt_lazy.extra" in sys.modules, hasattr(tgt_lazy, "extra"), hook_state()]
try:
    importlib.import_module("tgt_lazy.extra")
    out["import_after_revert"] = "imported"
except ImportError as exc:
    out["import_after_revert"] = [type(exc).__name__, exc.name]
out["observed"] = observe()
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["result"] == ["pending import", {"tgt_lazy.extra": "pending add"}]
    assert got["hook"] == {"installed": True, "meta_path_same": False}
    shout, filename, same_file = got["added"]
    assert shout == "HI!" and same_file
    assert re.match(r"^<suture [0-9a-f]{12}>/tgt_lazy/extra\.py$", filename), filename
    assert got["parent_attr"] is True
    assert set(got["status"]) == {"tgt_lazy.extra"}
    assert got["hook_while_applied"] == {"installed": True, "meta_path_same": False}
    assert got["gone"] == [False, False, {"installed": False, "meta_path_same": True}]
    assert got["import_after_revert"] == ["ModuleNotFoundError", "tgt_lazy.extra"]
    assert got["observed"] == V1_OUT


V2_USES_ADDED = dict(V2_ADDS, **{"tgt_lazy/core.py": '''
    from tgt_lazy import extra


    def greet(name):
        return "hello " + name


    class Greeter:
        def greet(self, name):
            return extra.shout(greet(name))
'''})


@pytest.mark.slow
def test_a_loaded_module_can_import_a_module_the_same_patch_adds(ws):
    # The fixed module imports the added one at module level: the import runs while
    # the patch is prepared, so the added module must already be importable then.
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2_USES_ADDED))
    got = ws.run(OBSERVE + r"""
patch = load(ARGS["patch"])
before = observe()
result = refusal(runtime.apply, patch) or runtime.status()["patches"][0]["modules"]
after = observe()
reverted = refusal(runtime.revert, patch.id)
emit({"before": before, "apply": result, "after": after, "revert": reverted,
      "final": observe(), "extra_loaded": "tgt_lazy.extra" in sys.modules, "hook": hook_state()})
""", [v1], {"patch": str(patch)})
    assert got["before"] == V1_OUT
    assert got["apply"]["tgt_lazy.core"] == "applied"
    assert set(got["apply"]) == {"tgt_lazy.core", "tgt_lazy.extra"}
    assert got["after"] == ["hello  ann ", "HELLO  BOB !"]
    assert got["revert"] is None
    assert got["final"] == V1_OUT
    assert got["extra_loaded"] is False
    assert got["hook"] == {"installed": False, "meta_path_same": True}


@pytest.mark.slow
def test_an_added_module_imported_by_a_refused_patch_is_forgotten(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2_USES_ADDED), hooks="""
        def pre_apply(ctx):
            assert ctx.module("tgt_lazy.extra") is not None, "the added module was imported"
            raise RuntimeError("not now")
    """)
    got = ws.run(OBSERVE + r"""
import tgt_lazy
before = observe()
err = refusal(runtime.apply, load(ARGS["patch"]))
emit({"err": err, "loaded": ["tgt_lazy.extra" in sys.modules, hasattr(tgt_lazy, "extra")],
      "hook": hook_state(), "obs": [before, observe()], "applied": runtime.applied()})
""", [v1], {"patch": str(patch)})
    assert got["err"]["code"] == "SUT-E205"
    assert "RuntimeError: not now" in got["err"]["message"]
    assert got["loaded"] == [False, False]
    assert got["hook"] == {"installed": False, "meta_path_same": True}
    assert got["obs"] == [V1_OUT, V1_OUT] and got["applied"] == []
