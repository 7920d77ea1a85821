"""Issue 15's module-statement verdicts: ``del NAME`` at module level, and changed
``mod.attr = v`` / ``mod.D[k] = v`` statements that set the same target (cases 64, 66, 66b).

The verdict tests call ``_defs.diff_module`` in-process (pure ``ast``); the engine test
runs the target in a subprocess, like the rest of tests/runtime.
"""

from __future__ import annotations

import textwrap
from typing import Dict

import pytest

from suture.runtime._defs import diff_module


def _plan(old: str, new: str):  # type: ignore[no-untyped-def]
    return diff_module(textwrap.dedent(old), textwrap.dedent(new))


def _verdicts(plan) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.kind: c.verdict for c in plan.changes}


HELPER = """
def _build():
    return {1, 2}


TABLE = _build()
"""


def test_added_del_of_a_plain_name_deletes_it_after_the_statements_that_use_it() -> None:
    plan = _plan(HELPER, HELPER + "del _build\n")
    assert _verdicts(plan) == {"added module-level del": "caveat"}
    assert plan.delete == ["_build"]
    assert plan.exec_stmts == []


def test_del_of_a_name_the_batch_binds_again_is_still_deleted() -> None:
    plan = _plan(HELPER, HELPER.replace("{1, 2}", "{1, 2, 3}")
                 .replace("def _build", "@staticmethod\ndef _build") + "del _build\n")
    assert "_build" in plan.bind and "_build" in plan.delete


def test_del_followed_by_a_new_binding_deletes_nothing() -> None:
    plan = _plan(HELPER + "_build = None\n", HELPER + "del _build\n_build = None\n")
    assert _verdicts(plan) == {"added module-level del": "live"}
    assert plan.delete == []


def test_removed_del_binds_the_name_again() -> None:
    plan = _plan(HELPER + "del _build\n", HELPER)
    assert _verdicts(plan) == {"removed module-level del": "caveat"}
    assert [getattr(s, "name", None) for s in plan.exec_stmts] == ["_build"]
    assert "_build" in plan.bind and plan.delete == []


@pytest.mark.parametrize("stmt", ["del CONFIG.attr", "del CONFIG['k']"])
def test_del_of_an_attribute_or_item_still_needs_a_hook(stmt: str) -> None:
    old = "import c\nCONFIG = c.make()\n"
    assert _plan(old, old + stmt + "\n").worst == "hook"


def test_del_in_a_class_body_still_needs_a_hook() -> None:
    old = "class A:\n    x = 1\n    y = x\n"
    assert _plan(old, old + "    del x\n").worst == "hook"


PLUGIN = """
import app.codecs

app.codecs.MAX = {size}
app.codecs.LOADERS["pickle"] = {loader}
"""


def test_changed_sets_of_the_same_targets_replace_the_old_effect() -> None:
    plan = _plan(PLUGIN.format(size="1 << 16", loader="pickle.loads"),
                 PLUGIN.format(size="1 << 12", loader="refuse"))
    assert plan.worst == "caveat"
    assert [c.verdict for c in plan.changes if c.kind == "replaced module statement"] \
        == ["live", "live"]
    assert len(plan.exec_stmts) == 2 and plan.bind == []


@pytest.mark.parametrize("size", ["app.codecs.MAX * 4", "len(app.codecs.LOADERS)",
                                  "app.codecs.limit()"])
def test_a_new_value_that_reads_what_the_statements_set_needs_a_hook(size: str) -> None:
    plan = _plan(PLUGIN.format(size="1 << 16", loader="f"), PLUGIN.format(size=size, loader="f"))
    assert plan.worst == "hook"


def test_a_statement_that_reads_the_old_effect_keeps_the_hook() -> None:
    old = PLUGIN.format(size="1 << 16", loader="f") + "LIMIT = app.codecs.MAX\n"
    assert _plan(old, old.replace("1 << 16", "1 << 12")).worst == "hook"


def test_a_target_set_twice_or_dropped_keeps_the_hook() -> None:
    old = PLUGIN.format(size="1 << 16", loader="f")
    assert _plan(old, old.replace("1 << 16", "1 << 12") + "app.codecs.MAX = 2\n").worst == "hook"
    assert _plan(old, old.replace('app.codecs.LOADERS["pickle"] = f\n', "")).worst == "hook"


def test_a_root_not_bound_by_an_import_keeps_the_hook() -> None:
    old = "import app\nobj = app.make()\nobj.MAX = 1\n"
    assert _plan(old, old.replace("obj.MAX = 1", "obj.MAX = 2")).worst == "hook"


V1 = {
    "tgt_del/__init__.py": "",
    "tgt_del/headers.py": '''
        def _build():
            return frozenset("ab")


        TABLE = _build()
    ''',
}
V2 = dict(V1, **{"tgt_del/headers.py": V1["tgt_del/headers.py"].replace('"ab"', '"abc"').rstrip(" ")
                 + "        del _build\n"})


@pytest.mark.slow
def test_del_applied_when_a_pending_module_is_imported(ws) -> None:  # type: ignore[no-untyped-def]
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(r"""
patch = load(ARGS["patch"])
out = {"apply": runtime.apply(patch).state}
from tgt_del import headers
out["fixed"] = [sorted(headers.TABLE), hasattr(headers, "_build")]
out["revert"] = runtime.revert(patch.id).state
out["old"] = [sorted(headers.TABLE), hasattr(headers, "_build")]
out["reapply"] = runtime.apply(patch).state
out["again"] = [sorted(headers.TABLE), hasattr(headers, "_build")]
emit(out)
""", [v1], {"patch": str(patch)})
    assert got == {"apply": "pending import", "fixed": [["a", "b", "c"], False],
                   "revert": "reverted", "old": [["a", "b"], True],
                   "reapply": "applied", "again": [["a", "b", "c"], False]}
