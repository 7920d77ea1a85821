"""Issue 17: the engine on a free-threaded build (SUT-E218), in a real process.

The process is a GIL build made to look free-threaded through the runtime's one seam,
``_freethreaded.probe`` (docs/engine.md, "Free-threaded builds"): apply and revert refuse
before anything changes, and a module left pending by an apply made before the seam
turned is not patched at its import (its state says why) — the import hook's guard,
which a real process could only reach if an apply had been accepted there.
"""

from __future__ import annotations

import pytest

V1 = {"tgt_ft/__init__.py": "def answer():\n    return 'old'\n",
      "tgt_ft_lazy.py": "def answer():\n    return 'old'\n"}
V2 = {"tgt_ft/__init__.py": "def answer():\n    return 'new'\n",
      "tgt_ft_lazy.py": "def answer():\n    return 'new'\n"}

SCRIPT = r"""
import suture.runtime._freethreaded as ft
from suture.runtime import _hook
from suture.runtime.errors import FreeThreadedBuild
import tgt_ft

real = ft.probe
patch = load(ARGS["patch"])
out = {"real": real()}
ft.probe = lambda: {"free_threaded": True, "gil_enabled": False}
try:
    runtime.apply(patch)
except FreeThreadedBuild as exc:
    out["apply"] = [exc.code, exc.details]
out["after_refusal"] = [tgt_ft.answer(), runtime.applied(), _hook.installed(),
                        runtime.status()["unpatchable"]["code"]]

ft.probe = real                 # a GIL build: applied, tgt_ft_lazy left pending
result = runtime.apply(patch)
out["applied"] = [result.state, tgt_ft.answer(), runtime.status()["unpatchable"]]
ft.probe = lambda: {"free_threaded": True, "gil_enabled": True}
try:
    runtime.revert(patch.id)
except FreeThreadedBuild as exc:
    out["revert"] = [exc.code, exc.details["gil_enabled"]]
import tgt_ft_lazy
out["imported"] = [tgt_ft_lazy.answer(), tgt_ft.answer(),
                   runtime.status()["patches"][0]["modules"]["tgt_ft_lazy"]]
emit(out)
"""


@pytest.mark.slow
def test_apply_revert_and_import_refuse_on_a_free_threaded_build(ws) -> None:
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(SCRIPT, [v1], {"patch": str(patch)})
    assert got["real"]["free_threaded"] is False   # no free-threaded build on these machines
    code, details = got["apply"]
    assert code == "SUT-E218" and details["op"] == "apply" and details["gil_enabled"] is False
    assert got["after_refusal"] == ["old", [], False, "SUT-E218"]
    assert got["applied"] == ["applied", "new", None]
    assert got["revert"] == ["SUT-E218", True]
    answer, still, state = got["imported"]
    assert (answer, still) == ("old", "new")
    assert state.startswith("refused at import: The module was not patched: this process runs "
                            "a free-threaded build"), state
