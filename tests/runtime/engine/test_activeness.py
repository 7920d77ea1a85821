"""Old code that is still running: reported by status(), waited for by wait_quiescent.

Frames that started before a patch keep running the old code. status()
finds them anywhere on a thread's stack (not only the top frame), in
suspended generators, and in asyncio tasks of a loop running in another thread.
"""

from __future__ import annotations

import re

import pytest

V1 = {"tgt_active.py": '''
    def work(release, started):
        started.set()
        release.wait()
        return "v1 work"


    def numbers():
        yield 1
        yield 2


    async def serve(release, started):
        started.set()
        await release.wait()
        return "v1 serve"
'''}
V2 = {"tgt_active.py": V1["tgt_active.py"].replace('"v1 ', '"v2 ').replace("yield 2", "yield 20")}


@pytest.mark.slow
def test_status_lists_a_blocked_thread_a_suspended_generator_and_an_asyncio_task(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(r"""
import asyncio
import threading

import tgt_active as m

release, started = threading.Event(), threading.Event()
worker = threading.Thread(target=m.work, args=(release, started), name="worker-1")
worker.start()
started.wait()

gen = m.numbers()
first = next(gen)

loop = asyncio.new_event_loop()
loop_thread = threading.Thread(target=loop.run_forever, name="loop")
loop_thread.start()
task_started = threading.Event()
holder = {}

async def spawn():
    holder["release"] = asyncio.Event()
    holder["task"] = asyncio.get_running_loop().create_task(
        m.serve(holder["release"], task_started), name="serve-task")

asyncio.run_coroutine_threadsafe(spawn(), loop).result()
task_started.wait()

p = load(ARGS["patch"])
out = {"idle": runtime.status()["active"]}
runtime.apply(p)
out["active"] = sorted((a["qualname"], a["where"], a.get("thread", a.get("task", "")),
                        a["patch"] == p.id) for a in runtime.status()["active"])
out["new_calls"] = [list(m.numbers())]

# let everything finish: each frame completes on the code it started with
release.set()
worker.join()
out["rest"] = list(gen)
loop.call_soon_threadsafe(holder["release"].set)
out["task"] = asyncio.run_coroutine_threadsafe(asyncio.wait_for(holder["task"], 10), loop).result()
loop.call_soon_threadsafe(loop.stop)
loop_thread.join()
loop.close()
del gen
out["after"] = runtime.status()["active"]
emit(out)
""", [v1], {"patch": str(patch)})
    assert got["idle"] == []
    assert got["active"] == [
        ["tgt_active:numbers", "generator", "", True],
        ["tgt_active:serve", "coroutine", "", True],
        ["tgt_active:serve", "task", "serve-task", True],
        ["tgt_active:work", "thread", "worker-1", True],
    ]
    assert got["new_calls"] == [[1, 20]]
    assert got["rest"] == [2]
    assert got["task"] == "v1 serve"
    assert got["after"] == []


WAITER = r"""
import threading
import time

import tgt_active as m

def block():
    release, started = threading.Event(), threading.Event()
    t = threading.Thread(target=m.work, args=(release, started), name="blocked")
    t.start()
    started.wait()
    return t, release

p = load(ARGS["patch"])
before = codes(m)
"""


@pytest.mark.slow
def test_wait_quiescent_refuses_while_a_thread_is_inside_the_old_function(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(WAITER + r"""
t, release = block()
t0 = time.monotonic()
err = refusal(runtime.apply, p, wait_quiescent=0.3)
waited = time.monotonic() - t0
out = {"err": err, "waited": waited >= 0.3, "same": same_codes(before, [m]),
       "applied": runtime.applied()}
release.set()
t.join()
result = runtime.apply(p, wait_quiescent=0.3)
out["then"] = result.state
r2 = threading.Event()
r2.set()
out["new_call"] = m.work(r2, threading.Event())
emit(out)
""", [v1], {"patch": str(patch)})
    err = got["err"]
    assert (err["code"], err["error"]) == ("SUT-E206", "NotQuiescent")
    assert re.match(r"^Patch [0-9a-f]{12} was not applied: after 0\.3 s old code is still running "
                    r"\(tgt_active:work in a thread\)\. Nothing was changed; retry later or apply "
                    r"without --wait-quiescent \(running frames then finish on the old code\)\. "
                    r"\[SUT-E206\]$", err["message"]), err["message"]
    assert [(a["qualname"], a["thread"]) for a in err["details"]["active"]] == [
        ("tgt_active:work", "blocked")]
    assert got["waited"] is True
    assert got["same"] is True and got["applied"] == []
    assert got["then"] == "applied"
    assert got["new_call"] == "v2 work"


@pytest.mark.slow
def test_wait_quiescent_applies_as_soon_as_the_thread_leaves(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    got = ws.run(WAITER + r"""
t, release = block()
t0 = time.monotonic()   # before the timer: a late t0 (a loaded host) made waited look short
threading.Timer(0.2, release.set).start()
result = runtime.apply(p, wait_quiescent=30)
waited = time.monotonic() - t0
t.join()
emit({"state": result.state, "waited": [waited >= 0.2, waited < 10]})
""", [v1], {"patch": str(patch)})
    assert got["state"] == "applied"
    assert got["waited"] == [True, True]
