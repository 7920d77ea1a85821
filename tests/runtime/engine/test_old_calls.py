"""Evidence that the replaced code is gone (issue 18, item 5): ``drained_at`` once no frame
runs a patch's old code, and, on CPython 3.12+, counts of calls into the replaced code
objects (sys.monitoring), off until asked for."""

from __future__ import annotations

import sys

import pytest

V1 = {"tgt_old.py": '''
    def work(release, started):
        started.set()
        release.wait()
        return "v1 work"


    def value():
        return 1
'''}
V2 = {"tgt_old.py": V1["tgt_old.py"].replace('"v1 ', '"v2 ').replace("return 1", "return 2")}

SCRIPT = r"""
import os, threading, time, types
import tgt_old as m

p = load(ARGS["patch"])
out = {}
if ARGS["count"]:
    out["why_not"] = runtime.count_old_calls(True)
release, started = threading.Event(), threading.Event()
worker = threading.Thread(target=m.work, args=(release, started), name="worker-1")
worker.start()
started.wait()
old_value = m.value.__code__
runtime.apply(p)
mine = lambda: [q for q in runtime.status()["patches"] if q["id"] == p.id][0]
first = mine()
out["draining"] = [first["drained_at"], [a["qualname"] for a in runtime.status()["active"]]]
release.set()
worker.join()
before = time.time()
drained = mine()
out["drained"] = drained["drained_at"] is not None and drained["drained_at"] >= before
out["drained_again"] = mine()["drained_at"] == drained["drained_at"]
m.value(); m.value()   # new calls: the fixed code, never counted
# a function rebuilt from the replaced code object, as a copy made before the patch would be
stale = types.FunctionType(old_value, vars(m), "value")
out["stale"] = [stale(), stale(), stale()]
out["old_calls"] = mine().get("old_calls")
out["counting"] = runtime.status()["old_calls"]
runtime.revert(p.id)
out["after_revert"] = [m.value(), runtime.status()["old_calls"]]
out["off"] = runtime.count_old_calls(False)
emit(out)
"""


@pytest.mark.slow
def test_drained_at_once_the_last_old_frame_has_left(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(SCRIPT, [v1], {"patch": str(patch), "count": False})
    assert got["draining"] == [None, ["tgt_old:work"]]
    assert got["drained"] is True and got["drained_again"] is True
    assert got["stale"] == [1, 1, 1]
    assert got["old_calls"] is None   # off unless asked for
    assert got["counting"] == {"counting": False, "unavailable": None}


@pytest.mark.slow
def test_calls_into_replaced_code_are_counted_when_asked(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(SCRIPT, [v1], {"patch": str(patch), "count": True})
    if sys.version_info < (3, 12):
        assert "3.12" in got["why_not"]
        assert got["old_calls"] == {"unavailable": got["why_not"]}
        assert got["counting"] == {"counting": False, "unavailable": got["why_not"]}
        return
    assert got["why_not"] is None
    calls = got["old_calls"]
    # The stale copy entered the old value() three times. Not counted: the fixed value()
    # calls, and the worker's frame that was already in old work() and went on there
    # (that is draining, named by "active" until it ended; a call is an entry).
    assert calls["by_function"] == {"tgt_old:value": 3}, calls
    assert calls["calls"] == 3 and calls["since"] > 0
    assert got["counting"] == {"counting": True, "unavailable": None}
    # After the revert the old code is the code again: not counted, nothing reported.
    assert got["after_revert"] == [1, {"counting": True, "unavailable": None}]
    assert got["off"] is None
