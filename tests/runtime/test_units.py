"""Units of work and the client's deadline at the commit point (runtime/_units.py,
engine ``_before_commit``), in a fresh process each: docs/engine.md, "Consistency across
functions of one patch"; docs/protocol.md, "Deadline"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from signing import make_patch

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """\
import sys, threading, time
sys.path.insert(0, {root!r})
from suture import runtime
from suture.runtime.errors import DeadlinePassed, UnitsBusy
import tiny.calc
data = open({patch!r}, "rb").read()
inside, leave = threading.Event(), threading.Event()
def worker():
    with runtime.unit():
        inside.set()
        leave.wait(5)
t = threading.Thread(target=worker)
t.start()
inside.wait(5)
# 1. a unit outlasts the wait: refused, nothing changed
try:
    runtime.apply(data, wait_quiescent=0.2)
except UnitsBusy as exc:
    print("busy", exc.code, tiny.calc.value())
# 2. the unit ends after the deadline, inside the wait: the deadline is checked after
#    the wait, at the commit, so nothing is applied
threading.Timer(0.6, leave.set).start()
try:
    runtime.apply(data, wait_quiescent=3, deadline=time.time() + 0.3)
except DeadlinePassed as exc:
    print("late", exc.code, tiny.calc.value(), runtime.applied())
t.join()
# 3. no unit running, deadline ahead: applied
print("applied", runtime.apply(data, deadline=time.time() + 30).state, tiny.calc.value())
# 4. a unit entered while nothing commits runs (the gate reopened)
with runtime.unit():
    print("unit", tiny.calc.value())
"""


def test_units_and_deadline_at_the_commit(tmp_path: Path) -> None:
    data = make_patch(tmp_path)
    patch = tmp_path / "p.suture"
    patch.write_bytes(data)
    root = tmp_path / "tiny-2-v1"
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=str(tmp_path / "run"),
               SUTURE_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(root),
                                                              patch=str(patch))],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["busy SUT-E217 1", "late SUT-E216 1 []",
                                       "applied applied 2", "unit 2"], out.stdout


def test_lowered_switch_interval_puts_back_the_applications_value() -> None:
    from suture.runtime import _switching

    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.004)
        app = sys.getswitchinterval()
        # Overlapping holders (the agent serving, the engine preparing) that leave in the
        # order they came: restoring each its own "before" would leave 0.0005 for good.
        agent = _switching.lowered(0.0001)
        engine = _switching.lowered(0.0005)
        agent.__enter__()
        assert sys.getswitchinterval() <= 0.0001
        engine.__enter__()
        assert sys.getswitchinterval() <= 0.0001
        agent.__exit__(None, None, None)
        assert sys.getswitchinterval() <= 0.0005
        engine.__exit__(None, None, None)
        assert sys.getswitchinterval() == app
        # A value the application sets while we hold it lowered wins.
        with _switching.lowered(0.0001):
            sys.setswitchinterval(0.002)
            mine = sys.getswitchinterval()
        assert sys.getswitchinterval() == mine
    finally:
        sys.setswitchinterval(saved)


def test_deferred_collector_puts_back_the_applications_thresholds() -> None:
    import gc
    import os

    from suture.runtime import _switching

    saved = gc.get_threshold()
    try:
        gc.set_threshold(900, 11, 12)
        with _switching.collector_deferred():
            with _switching.collector_deferred():   # nested holders: the last one restores
                assert gc.get_threshold() == (_switching._DEFERRED, 11, 12)
            assert gc.get_threshold()[0] == _switching._DEFERRED
            # a child forked meanwhile gets the application's thresholds back
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                os.write(w, repr(gc.get_threshold()).encode())
                os._exit(0)
            os.close(w)
            child = os.read(r, 100).decode()
            os.close(r)
            os.waitpid(pid, 0)
            assert child == "(900, 11, 12)"
        assert gc.get_threshold() == (900, 11, 12)
        # thresholds the application sets while they are deferred win
        with _switching.collector_deferred():
            gc.set_threshold(500, 5, 5)
        assert gc.get_threshold() == (500, 5, 5)
        # automatic collection turned off by the application stays off
        gc.set_threshold(0)
        with _switching.collector_deferred():
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)
