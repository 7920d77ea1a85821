"""An idle agent loads only what it needs to wait (issue 19), and stays fork-safe when it
loads the rest later: the engine, the store and sqlite3 are imported on the agent thread,
under the fork guard, when a request or a start-up apply needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any, Dict, List

import pytest

from agentutil import DEADLINE, SRC, Targets, result, wait_for

pytestmark = pytest.mark.slow

REPORTER = r'''
import json, sys
def report():
    print(json.dumps({m: m in sys.modules for m in (
        "suture.runtime._agent", "suture.runtime.engine", "suture.runtime.patchfile",
        "sqlite3", "typing", "platform")}), flush=True)
report()
for line in sys.stdin:
    report()
'''


def _line(proc: subprocess.Popen) -> Dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return json.loads(line)  # type: ignore[no-any-return]


def test_an_idle_agent_loads_neither_the_engine_nor_sqlite3_until_a_request_needs_them(
        targets: Targets):
    app = targets.script(REPORTER)
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable, str(app)],
                         targets.env(), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    idle = _line(proc)    # printed after the bootstrap waited for the agent's start-up work
    # typing is imported at start on purpose (test_dataclasses_defined_while_the_agent_loads...)
    assert idle == {"suture.runtime._agent": True, "suture.runtime.engine": False,
                    "suture.runtime.patchfile": False, "sqlite3": False, "typing": True,
                    "platform": False}, idle
    path = targets.wait_agent(proc.pid, proc)
    hello = result(path, "hello")
    assert hello["pid"] == proc.pid and hello["python"] == sys.version.split()[0]
    proc.stdin.write("\n")
    proc.stdin.flush()
    after_hello = _line(proc)
    assert after_hello["suture.runtime.engine"] is False and after_hello["sqlite3"] is False
    # status and list answer without the engine while nothing was ever applied here...
    assert result(path, "status")["patches"] == [] and result(path, "list")["patches"] == []
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert _line(proc)["suture.runtime.engine"] is False
    # ...and a request that needs it loads it (old_calls: the engine's counters).
    assert result(path, "status", old_calls=False)["patches"] == []
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert _line(proc)["suture.runtime.engine"] is True


DATACLASSES = r'''
import dataclasses, sys, threading
failures = []
stop = threading.Event()
def define():
    while not stop.is_set():
        try:
            @dataclasses.dataclass
            class Point:
                x: int = 0
        except Exception as exc:
            failures.append(repr(exc))
threading.Thread(target=define, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
stop.set()
print(failures[:3], len(failures), flush=True)
'''


def test_dataclasses_defined_while_the_agent_loads_the_engine_never_see_typing_half_made(
        targets: Targets):
    # dataclasses reads typing from sys.modules without importing it. Imported first on the
    # agent thread (the engine needs it), typing sat there half-initialized while the
    # application defined a dataclass: "partially initialized module 'typing'" (CI, 3.14).
    # The agent imports it at start, before the application's code.
    app = targets.script(DATACLASSES)
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable, str(app)],
                         targets.env(), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    path = targets.wait_agent(proc.pid, proc)
    assert result(path, "status", old_calls=False)["patches"] == []   # loads the engine
    out, err = proc.communicate("\n", timeout=DEADLINE)
    assert out.strip().endswith(" 0"), out + err


def test_the_status_of_a_process_that_never_loaded_the_engine_is_the_engines_own():
    # runtime.status() answers for the engine while it is not imported (nothing applied):
    # the answer must be the one the engine gives in the same state.
    code = ("import json, sys; from suture import runtime; a = runtime.status(); "
            "b = runtime.applied(); assert 'suture.runtime.engine' not in sys.modules; "
            "import suture.runtime.engine; print(json.dumps([a, runtime.status(), b, "
            "runtime.applied()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(SRC)))
    without, engine, ids_without, ids = json.loads(out.stdout)
    assert without == engine and ids_without == ids == [], (without, engine)


FORK_WHILE_IMPORTING = r'''
import json, os, signal, socket, sys, threading, time
import suture.agent
from suture.runtime import _agent

# Make the race certain rather than likely: the agent thread's import of the engine stops
# in this finder (holding the engine package's import lock) until the main thread is inside
# os.fork()'s before-hooks; a thread releases it from there. A finder that declines
# (returns None) changes nothing else.
importing, proceed, stop = threading.Event(), threading.Event(), threading.Event()
held_at_fork = []

class Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "suture.runtime.engine" and threading.current_thread().name == "suture-agent" \
                and not proceed.is_set():
            importing.set()
            proceed.wait(60)
        return None

sys.meta_path.insert(0, Gate())

def spin():                       # load: the import competes for the GIL
    n = 0
    while not stop.is_set():
        n += 1

spinners = [threading.Thread(target=spin, daemon=True) for _ in range(3)]
for t in spinners:
    t.start()
suture.agent.start()
print(json.dumps({"ready": os.getpid()}), flush=True)
assert importing.wait(60), "the agent did not import the engine"
main = threading.get_ident()

def release():
    while main not in _agent._fork_holds:   # the before-fork hook is waiting for the guard
        time.sleep(0.001)
    held_at_fork.append("suture.runtime.engine" not in sys.modules)   # not imported yet
    proceed.set()

threading.Thread(target=release, daemon=True).start()
pid = os.fork()
if pid == 0:
    code = 3
    try:
        signal.alarm(30)              # a child stuck on an inherited import lock dies here
        from suture import runtime
        runtime.status()              # the engine, imported in the child's main thread
        path = _agent.socket_path()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(path)
            s.sendall(b'{"v":1,"op":"status"}\n')
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        code = 0 if json.loads(raw)["ok"] is True else 4
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
stop.set()
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status),
                  "engine_import_unfinished_at_fork": held_at_fork}), flush=True)
sys.stdin.read()
'''


def test_a_fork_while_the_agent_imports_the_engine_gives_a_working_child(targets: Targets):
    app = targets.script(FORK_WHILE_IMPORTING)
    proc = targets.start([sys.executable, str(app)], targets.env(), stdin=subprocess.PIPE)
    pid = _line(proc)["ready"]
    path = targets.wait_agent(pid, proc)
    answers: List[Any] = []
    # Blocks until the gate opens; the agent imports the engine for it (old_calls needs it).
    asker = threading.Thread(target=lambda: answers.append(result(path, "status",
                                                                  old_calls=False)))
    asker.start()
    got = _line(proc)
    asker.join(DEADLINE)
    wait_for(lambda: answers, "the parent's status answer")
    # The fork was asked for while the agent thread was inside the engine's import (holding
    # its import lock, the module not imported yet); it waited for the import, and the
    # child imported the engine itself and served a status request.
    assert got == {"child_exit": 0, "engine_import_unfinished_at_fork": [True]}, got
    assert answers[0]["patches"] == []
