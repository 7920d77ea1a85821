"""fork() during apply/revert: the child gets a free engine lock and a consistent engine.

Every test runs a real target process that calls the real ``os.fork()`` while
an apply or revert is in progress (another thread inside a hook, inside
``wait_quiescent``, or the forking thread itself inside a hook). The child
reports over a pipe what it sees and whether it can still use the engine; the
parent kills a child that stays silent past a deadline, so a regression (the
child inheriting the lock held by a thread that does not exist there) fails
instead of hanging. Each target script has a subprocess timeout as well.

Consistent means: the child runs the fixed code exactly when its engine has a
record of the patch (never patched code with no record, or the reverse).
"""

from __future__ import annotations

import textwrap

import pytest

from suture.tooling import trust

from signing import signed

V1 = {"tgt_fork.py": '''
    def value(hold=None):
        if hold is not None:
            hold()
        return 1
'''}
V2 = {"tgt_fork.py": '''
    def value(hold=None):
        if hold is not None:
            hold()
        return 2
'''}
OTHER_V1 = {"tgt_other.py": "def other():\n    return 'a'\n"}
OTHER_V2 = {"tgt_other.py": "def other():\n    return 'b'\n"}

# Each hook calls the target script's HOOKS[name](ctx) if the script set one.
HOOKS = '''
    import sys


    def _call(name, ctx):
        fn = getattr(sys.modules["__main__"], "HOOKS", {}).get(name)
        if fn is not None:
            fn(ctx)


    def pre_apply(ctx):
        _call("pre_apply", ctx)


    def post_apply(ctx):
        _call("post_apply", ctx)


    def pre_revert(ctx):
        _call("pre_revert", ctx)


    def post_revert(ctx):
        _call("post_revert", ctx)
'''

# Fork and report helpers every script below gets (after the conftest PRELUDE).
FORK = r'''
import os
import select
import signal
import threading
import time
import warnings

# 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks in the
# child". That is the very situation under test.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")

import tgt_fork

HOOKS = {}
CHILD = {}      # set in a forked child: the pipe end to answer on
FORKS = []      # in the parent: (pid, read end) of every child
DEADLINE = 10.0


def fork():
    """os.fork() with a pipe for the child's answer; the pid (0 in the child)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        CHILD["w"] = w
        return 0
    os.close(w)
    FORKS.append((pid, r))
    return pid


def answer(check):
    """In the child: run check() here, send what it returned, exit.

    Here, on the forking thread, never on a new thread: glibc gives a thread
    created in the child the stack and descriptor of a thread that did not
    survive the fork, hence the same ident, and an RLock that dead thread
    held would look owned by the new one (a deadlock would pass unnoticed).
    A child that never answers is killed by collect().
    """
    try:
        box = {"ok": check()}
    except BaseException as exc:
        box = {"error": repr(exc)}
    os.write(CHILD["w"], json.dumps(box, default=repr).encode())
    os._exit(0)


def collect(pid, r, timeout=2 * DEADLINE):
    """In the parent: the child's answer; a child silent past the deadline is killed."""
    end = time.monotonic() + timeout
    chunks = []
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return {"deadlock": "the child was silent for %g s" % timeout}
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks).decode() or '{"error": "no answer"}')
    out["status"] = status
    return out


def view():
    ids = [p["id"] for p in runtime.status()["patches"]]
    return {"value": tgt_fork.value(), "applied": ids}


def exercise(patch):
    """Every engine entry point, in the child: status, revert or apply, and back."""
    HOOKS.clear()
    steps = [view()]
    if patch.id in steps[0]["applied"]:
        steps += [runtime.revert(patch.id).state, view(), runtime.apply(patch).state, view()]
    else:
        steps += [runtime.apply(patch).state, view(), runtime.revert(patch.id).state, view()]
    return steps


def in_frames(thread, name):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


PATCH = load(ARGS["patch"])
'''


def run(ws, script, roots, args):
    return ws.run(FORK + textwrap.dedent(script).lstrip("\n"), roots, args, timeout=120)


def _consistent(view):
    """The child runs the fixed code exactly when its engine records the patch."""
    return (view["value"] == 2) == bool(view["applied"])


def _exercised(steps, patch_id, *, applied):
    """The steps of exercise(): the first view, then the round trip in the child."""
    patched, clean = {"value": 2, "applied": [patch_id]}, {"value": 1, "applied": []}
    if applied:
        return steps == [patched, "reverted", clean, "applied", patched]
    return steps == [clean, "applied", patched, "reverted", clean]


def _child_ok(child):
    assert "deadlock" not in child, child
    assert "error" not in child, child
    assert child["status"] == 0, child
    return child["ok"]


@pytest.mark.slow
@pytest.mark.parametrize("op,hook", [("apply", "pre_apply"), ("apply", "post_apply"),
                                     ("revert", "pre_revert"), ("revert", "post_revert")])
def test_a_fork_from_another_thread_waits_for_the_apply_or_revert_in_progress(ws, op, hook):
    # post_apply runs between the commit and the record: a child forked then, if the
    # fork did not wait, would run the patched code with no record of it.
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    patch = ws.patch(v1, v2, hooks=HOOKS)
    got = run(ws, r"""
        op, hook = ARGS["op"], ARGS["hook"]
        if op == "revert":
            runtime.apply(PATCH)
        entered = threading.Event()

        def slow(ctx):
            entered.set()
            time.sleep(0.5)

        HOOKS[hook] = slow
        forked = {}

        def forker():
            # Not the main thread: the engine lock's owner (the main thread) is then one
            # whose ident no thread made in the child can get (see answer()).
            assert entered.wait(DEADLINE)
            t0 = time.monotonic()
            if fork() == 0:
                answer(lambda: exercise(PATCH))
            forked["waited"] = time.monotonic() - t0

        b = threading.Thread(target=forker)
        b.start()
        state = (runtime.apply(PATCH) if op == "apply" else runtime.revert(PATCH.id)).state
        b.join(DEADLINE)
        child = collect(*FORKS[0])
        emit({"child": child, "parent": state, "waited": forked["waited"], "view": view()})
        """, [v1], {"patch": str(patch), "op": op, "hook": hook})
    steps = _child_ok(got["child"])
    assert _consistent(steps[0]), steps
    # The fork waited until the whole apply/revert was over: the child has all of it.
    assert _exercised(steps, patch_id(patch), applied=op == "apply"), steps
    assert got["waited"] >= 0.3, got
    assert got["parent"] == ("applied" if op == "apply" else "reverted")
    assert got["view"] == ({"value": 2, "applied": [patch_id(patch)]} if op == "apply"
                           else {"value": 1, "applied": []})


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["pre_apply", "post_apply", "pre_revert", "post_revert"])
def test_a_hook_that_forks_in_the_thread_holding_the_engine_lock(ws, hook):
    # The before-fork hook runs in the thread that already holds the (re-entrant) engine
    # lock: it must not deadlock. The child continues the same apply/revert from the
    # middle of the hook, finishes it, and then owns a free lock.
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    patch = ws.patch(v1, v2, hooks=HOOKS)
    got = run(ws, r"""
        hook = ARGS["hook"]
        op = "apply" if hook.endswith("apply") else "revert"
        if op == "revert":
            runtime.apply(PATCH)

        seen = {}

        def forking(ctx):
            HOOKS.clear()
            if fork() == 0:
                # Another thread of the child must wait until the child has finished
                # the apply/revert it carries on with: the lock stays held until then.
                peek = threading.Thread(target=lambda: seen.update(ids=runtime.applied()))
                peek.start()
                seen["thread"] = peek
                time.sleep(0.2)

        HOOKS[hook] = forking
        state = (runtime.apply(PATCH) if op == "apply" else runtime.revert(PATCH.id)).state
        if CHILD:
            seen["thread"].join(DEADLINE)
            answer(lambda: [seen.get("ids", "still waiting"), state] + exercise(PATCH))
        child = collect(*FORKS[0])
        emit({"child": child, "parent": state, "view": view()})
        """, [v1], {"patch": str(patch), "hook": hook})
    peeked, *steps = _child_ok(got["child"])
    applied = hook.endswith("apply")
    assert peeked == ([patch_id(patch)] if applied else []), peeked
    assert steps[0] == ("applied" if applied else "reverted")
    assert _consistent(steps[1]), steps
    assert _exercised(steps[1:], patch_id(patch), applied=applied), steps
    assert got["parent"] == steps[0]
    assert got["view"] == ({"value": 2, "applied": [patch_id(patch)]} if applied
                           else {"value": 1, "applied": []})


@pytest.mark.slow
def test_a_fork_waits_while_wait_quiescent_waits_then_the_child_has_the_patch(ws):
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    patch = ws.patch(v1, v2)
    got = run(ws, r"""
        release = threading.Event()
        inside = threading.Event()

        def hold():
            inside.set()
            release.wait(DEADLINE)

        busy = threading.Thread(target=tgt_fork.value, args=(hold,))   # old code, for a while
        busy.start()
        assert inside.wait(DEADLINE)
        done = {}
        a = threading.Thread(target=lambda: done.update(
            state=runtime.apply(PATCH, wait_quiescent=DEADLINE).state))
        a.start()
        end = time.monotonic() + DEADLINE
        while not in_frames(a, "_wait_quiescent") and time.monotonic() < end:
            time.sleep(0.001)
        threading.Timer(0.5, release.set).start()
        t0 = time.monotonic()
        if fork() == 0:
            answer(lambda: exercise(PATCH))
        waited = time.monotonic() - t0
        a.join(DEADLINE)
        busy.join(DEADLINE)
        emit({"child": collect(*FORKS[0]), "parent": done.get("state"), "waited": waited})
        """, [v1], {"patch": str(patch)})
    steps = _child_ok(got["child"])
    assert _exercised(steps, patch_id(patch), applied=True), steps
    assert got["parent"] == "applied"
    assert got["waited"] >= 0.3, got


@pytest.mark.slow
def test_a_fork_from_old_code_that_wait_quiescent_waits_for_delays_the_fork_not_forever(ws):
    # The forking thread is itself inside the old code: wait_quiescent (holding the lock)
    # cannot succeed while that thread waits in fork, so it times out and refuses, and
    # then the fork goes ahead. Bounded by wait_quiescent's timeout, never a deadlock.
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    patch = ws.patch(v1, v2)
    got = run(ws, r"""
        done = {}

        def applier():
            done["refusal"] = refusal(runtime.apply, PATCH, wait_quiescent=1.0)

        a = threading.Thread(target=applier)
        forked = {}

        def hold():
            a.start()
            end = time.monotonic() + DEADLINE
            while not in_frames(a, "_wait_quiescent") and time.monotonic() < end:
                time.sleep(0.001)
            t0 = time.monotonic()
            if fork() == 0:
                answer(lambda: exercise(PATCH))
            forked["waited"] = time.monotonic() - t0

        returned = tgt_fork.value(hold)
        a.join(DEADLINE)
        emit({"child": collect(*FORKS[0]), "returned": returned, "code": done["refusal"]["code"],
              "waited": forked["waited"], "view": view()})
        """, [v1], {"patch": str(patch)})
    steps = _child_ok(got["child"])
    assert _exercised(steps, patch_id(patch), applied=False), steps
    assert got["code"] == "SUT-E206"
    assert got["returned"] == 1
    assert 0.5 <= got["waited"] < 5, got
    assert got["view"] == {"value": 1, "applied": []}


@pytest.mark.slow
def test_the_childs_agent_applies_reverts_and_reports_after_a_fork_during_apply(ws, tmp_path):
    # The agent is started before the engine is first used, so its after-fork hook runs
    # before the engine's: the child's new agent thread starts, and auto-applies the
    # installed patch, while the child's engine lock is still held by the forking thread
    # (it waits for the engine's after-fork hook to release it).
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    o1, o2 = ws.tree("o1", OTHER_V1), ws.tree("o2", OTHER_V2)
    patch = ws.patch(v1, v2, hooks=HOOKS)
    other = ws.patch(o1, o2)
    other.write_bytes(signed(other.read_bytes()))
    _, record = trust.require(other.read_bytes())
    got = run(ws, r"""
        import base64
        import socket

        os.environ["SUTURE_STATE_DIR"] = ARGS["state"]
        os.environ["SUTURE_RUNTIME_DIR"] = ARGS["rundir"]
        from suture.runtime import store
        from suture.runtime import _agent
        import tgt_other


        def call(op, **fields):
            path = os.path.join(ARGS["rundir"], "%d.sock" % os.getpid())
            end = time.monotonic() + DEADLINE
            while not os.path.exists(path) and time.monotonic() < end:
                time.sleep(0.01)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(DEADLINE)
                s.connect(path)
                s.sendall(json.dumps(dict(v=1, op=op, **fields)).encode() + b"\n")
                s.shutdown(socket.SHUT_WR)
                reply = json.loads(s.makefile("rb").read())
            assert reply["ok"], reply
            return reply["result"]


        def rows(pid):
            return [(r["op"], r["patch_id"], r["result"]) for r in store.audit_log()
                    if r["pid"] == pid and r["op"] == "auto-apply"
                    and r["result"] != "applying"]


        def wait_rows(pid):
            end = time.monotonic() + DEADLINE
            while not rows(pid) and time.monotonic() < end:
                time.sleep(0.01)
            return rows(pid)


        def ids(status):
            return [p["id"] for p in status["patches"]]


        _agent.start()
        call("hello")   # answered once the agent's auto-apply (of nothing) is done
        # Installed now (with the trust record `suture install` would write), the patch
        # reaches only agents started from here on: the child's.
        installed = store.install(open(ARGS["other"], "rb").read(), ARGS["trust"]).id
        entered = threading.Event()

        def slow(ctx):
            entered.set()
            time.sleep(0.5)

        HOOKS["post_apply"] = slow
        blob = base64.b64encode(open(ARGS["patch"], "rb").read()).decode()

        def through_agent():
            HOOKS.clear()
            first = ids(call("status"))
            auto = wait_rows(os.getpid())
            return [first, auto, (tgt_fork.value(), tgt_other.other()),
                    call("revert", patch_id=PATCH.id)["state"], ids(call("status")),
                    tgt_fork.value(), call("apply", patch=blob)["state"],
                    ids(call("status")), tgt_fork.value()]

        def forker():
            assert entered.wait(DEADLINE)
            if fork() == 0:
                answer(through_agent)

        b = threading.Thread(target=forker)
        b.start()
        runtime.apply(PATCH)   # on the main thread (see answer())
        b.join(DEADLINE)
        emit({"child": collect(*FORKS[0]), "installed": installed, "parent_rows": rows(os.getpid()),
              "parent": ids(call("status")), "other": tgt_other.other()})
        """, [v1, o1], {"patch": str(patch), "other": str(other), "state": str(tmp_path / "state"),
                        "rundir": str(tmp_path / "run"), "trust": record})
    steps = _child_ok(got["child"])
    pid, oid = patch_id(patch), got["installed"]
    assert got["parent_rows"] == []
    # The child's status may be asked before or after its agent auto-applied the installed
    # patch; either way the patch the parent was applying at fork time is there, whole.
    assert steps[0] in ([pid], [pid, oid]), steps
    assert steps[1:] == [[["auto-apply", oid, "applied"]], [2, "b"],
                         "reverted", [oid], 1, "applied", [oid, pid], 2]
    assert got["parent"] == [pid]
    assert got["other"] == "a"


@pytest.mark.slow
def test_fork_hooks_are_registered_on_first_use_not_on_import(ws):
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    patch = ws.patch(v1, v2)
    got = run(ws, r"""
        def fork_while_held(seconds):
            # Hold the engine lock on another thread (directly, not through an entry
            # point) and time a fork from this one.
            held, release = threading.Event(), threading.Event()

            def holder():
                with engine._LOCK:
                    held.set()
                    release.wait(seconds)

            t = threading.Thread(target=holder)
            t.start()
            assert held.wait(DEADLINE)
            t0 = time.monotonic()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            waited = time.monotonic() - t0
            release.set()
            t.join(DEADLINE)
            os.waitpid(pid, 0)
            return waited

        before = fork_while_held(1.0)   # imported and loaded a patch, nothing more
        runtime.status()                # the first use
        after = fork_while_held(0.5)
        emit({"before": before, "after": after})
        """, [v1], {"patch": str(patch)})
    assert got["before"] < 0.5, got
    assert got["after"] >= 0.3, got


def patch_id(path):
    from suture.runtime import load_patch

    return load_patch(path.read_bytes()).id
