"""The target program of tests/agent/test_interpreters.py (issue 22), and its driver.

One program, configured by one JSON argument, holds sub-interpreters that import the patched
module (``sutlivedemo``, tests/livecli.py) and answers commands on stdin with one JSON line
each, so that a test can ask every interpreter what the patched function returns *now*:

- ``api``: ``"low"``: ``_interpreters`` (3.13+) or ``_xxsubinterpreters`` (3.12), the module
  calls through ``exec``/``run_string`` and its answer comes back in a file per
  interpreter; ``"high"``: ``concurrent.interpreters`` (3.14+), ``Interpreter.call`` of a
  function of ``sutprobe`` (written by the test), whose answer comes back as the call's value.
- ``drive``: ``"loop"``: a thread of the main interpreter calls into every interpreter, round
  after round, and ``probe`` answers with a round that started after the command;
  ``"idle"``: ``probe`` calls in from the main thread, and between commands no
  sub-interpreter runs code.
- ``subs``: one entry per sub-interpreter: ``path`` (a directory put first on its
  ``sys.path``: another copy of the module), ``import`` (false: only on ``import N``),
  ``busy`` (a thread of the main interpreter runs a loop inside it, ``exec`` never returns
  until ``release N``: the interpreter is running code all along).
- ``pool``: ``max_workers`` of an ``InterpreterPoolExecutor`` (3.14+), 0 for none.

Each interpreter calls an alias bound when it imported the module (``ALIAS``), as an
application holds one: a patch must reach references, not only the module attribute.

Commands: ``probe`` ({interpreter id: answer}, "0" the main), ``list`` (every interpreter
id of the process), ``import N``, ``spawn`` (a new sub-interpreter that imports the module
at once; its id), ``release N``, ``pool N`` / ``fresh N`` (N tasks on the long-lived pool /
on a new executor shut down afterwards: [[interpreter id, answer], ...]), ``quit`` (every
interpreter closed; "bye", exit 0). A failure answers {"error": traceback}.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Any, Dict, List, Optional

import pytest

PROGRAM = r'''
import json, os, sys, threading, time, traceback

CONF = json.loads(sys.argv[1])
API, DRIVE, OUT = CONF["api"], CONF["drive"], CONF["out"]

from sutlivedemo import answer as ALIAS   # the main interpreter's reference

if API == "high":
    from concurrent import interpreters
    import sutprobe

    def create():
        return interpreters.create()

    def ident(h):
        return h.id

    def run(h, code):
        h.exec(code)

    def close(h):
        h.close()

    def all_ids():
        return sorted(i.id for i in interpreters.list_all())
else:
    try:
        import _interpreters as low
    except ImportError:   # 3.12
        import _xxsubinterpreters as low

    def create():
        return low.create()

    def ident(h):
        return int(h)

    if hasattr(low, "exec"):
        def run(h, code):
            err = low.exec(h, code)
            if err is not None:
                raise RuntimeError(f"in interpreter {int(h)}: {err.formatted}")
    else:
        def run(h, code):
            low.run_string(h, code)

    def close(h):
        low.destroy(h)

    def all_ids():
        return sorted(int(i[0] if isinstance(i, tuple) else i) for i in low.list_all())

BUSY = """
import os, time
n = 0
while not os.path.exists(%r):
    n += 1
    with open(%r, 'w') as f:
        f.write(str(n) + ' ' + ALIAS())
    os.replace(%r, %r)
    time.sleep(0.01)
"""


class Sub:
    def __init__(self, spec):
        self.h = create()
        self.id = ident(self.h)
        self.out = os.path.join(OUT, f"answer-{os.getpid()}-{self.id}")
        self.ready = False
        self.busy = None
        if spec.get("path"):
            run(self.h, f"import sys; sys.path.insert(0, {spec['path']!r})")
        if spec.get("import", True):
            self.load()
        if spec.get("busy"):
            self.start_busy()

    def load(self):
        run(self.h, "import sutprobe\nfrom sutlivedemo import answer as ALIAS")
        self.ready = True

    def ask(self):
        busy = self.busy
        if busy is not None:
            answer = self.fresh_busy(busy)
            if answer is not None:
                return answer
        if API == "high":
            return self.h.call(sutprobe.probe)
        run(self.h, f"with open({self.out!r}, 'w') as f: f.write(ALIAS())")
        with open(self.out) as f:
            return f.read()

    def start_busy(self):
        code = BUSY % (self.out + ".stop", self.out + ".tmp", self.out + ".tmp", self.out)
        self.busy = threading.Thread(target=run, args=(self.h, code), name=f"busy-{self.id}")
        self.busy.start()
        self.fresh_busy(self.busy)

    def seen(self):
        try:
            with open(self.out) as f:
                n, _, answer = f.read().partition(" ")
            return int(n), answer
        except (OSError, ValueError):
            return 0, ""

    def fresh_busy(self, busy):   # from a call that started after this one; None: released
        first, deadline = self.seen()[0], time.monotonic() + 60
        while time.monotonic() < deadline:
            n, answer = self.seen()
            if n > first + 1:
                return answer
            if not busy.is_alive():
                return None
            time.sleep(0.005)
        raise RuntimeError(f"interpreter {self.id}: its loop stopped answering")

    def release(self):
        open(self.out + ".stop", "w").close()
        self.busy.join()
        self.busy = None


subs = [Sub(spec) for spec in CONF["subs"]]
cond = threading.Condition()
rounds = [0, {}]
stop = threading.Event()


def one_round():
    try:
        got = {"0": ALIAS()}
        for s in list(subs):
            if s.ready:
                got[str(s.id)] = s.ask()
        return got
    except Exception:
        return {"error": traceback.format_exc()}


def loop():
    while not stop.is_set():
        got = one_round()
        with cond:
            rounds[0] += 1
            rounds[1] = got
            cond.notify_all()
        time.sleep(0.005)


def probe():
    if DRIVE == "idle":
        return one_round()
    with cond:
        start = rounds[0]
        if not cond.wait_for(lambda: rounds[0] >= start + 2, timeout=60):
            return {"error": "the driver thread made no round in 60 s"}
        return rounds[1]


pool = None
if CONF.get("pool"):
    from concurrent.futures import InterpreterPoolExecutor
    pool = InterpreterPoolExecutor(max_workers=CONF["pool"])


def tasks(executor, n):
    # each task lasts a little, so that the pool starts all its workers
    futures = [executor.submit(sutprobe.where, 0.2) for _ in range(n)]
    return [list(f.result(timeout=60)) for f in futures]


print("ready", json.dumps([s.id for s in subs]), flush=True)
driver = None
if DRIVE == "loop":
    driver = threading.Thread(target=loop, name="driver")
    driver.start()
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "quit":
        break
    try:
        if cmd == "probe":
            out = probe()
        elif cmd == "list":
            out = all_ids()
        elif cmd == "import":
            subs[int(args[0])].load()
            out = subs[int(args[0])].id
        elif cmd == "spawn":
            subs.append(Sub({}))
            out = subs[-1].id
        elif cmd == "release":
            subs[int(args[0])].release()
            out = subs[int(args[0])].id
        elif cmd == "pool":
            out = tasks(pool, int(args[0]))
        elif cmd == "fresh":
            from concurrent.futures import InterpreterPoolExecutor
            with InterpreterPoolExecutor(max_workers=2) as executor:
                out = tasks(executor, int(args[0]))
        else:
            out = {"error": f"unknown command {cmd!r}"}
    except Exception:
        out = {"error": traceback.format_exc()}
    print(json.dumps(out), flush=True)
stop.set()
if driver is not None:
    driver.join()
for s in subs:
    if s.busy is not None:
        s.release()
if pool is not None:
    pool.shutdown()
for s in subs:
    close(s.h)
print("bye", flush=True)
'''

# On the targets' sys.path next to the patched package (not part of the patch): the function
# ``concurrent.interpreters`` calls (pickled by reference, so imported in the callee).
SUTPROBE = '''\
import time

from sutlivedemo import answer as ALIAS


def probe():
    return ALIAS()


def where(pause=0.0):
    import _interpreters
    time.sleep(pause)
    return _interpreters.get_current()[0], ALIAS()
'''


class Program:
    """A running PROGRAM: its commands and answers, its stderr kept whole."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._lines: "queue.Queue[str]" = queue.Queue()
        self._err: List[str] = []
        for stream, sink in ((proc.stdout, self._lines.put), (proc.stderr, self._err.append)):
            threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()

    def stderr(self) -> str:
        return "".join(self._err)

    def line(self, timeout: float = 60.0) -> str:
        try:
            got = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"pid {self.pid} did not answer within {timeout} s; stderr:\n"
                        f"{self.stderr()}")
        if not got:
            self.proc.wait(timeout=10)
            pytest.fail(f"pid {self.pid} exited ({self.proc.returncode}); stderr:\n"
                        f"{self.stderr()}")
        return got

    def ready(self) -> List[int]:
        """The sub-interpreters' ids, once the program has made them."""
        first = self.line()
        assert first.startswith("ready "), first + self.stderr()
        return json.loads(first[len("ready "):])  # type: ignore[no-any-return]

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        got = json.loads(self.line())
        assert not (isinstance(got, dict) and "error" in got), (command, got["error"])
        return got

    def probe(self) -> Dict[str, str]:
        """What the patched function returns now, per interpreter id ("0": the main)."""
        return self.ask("probe")  # type: ignore[no-any-return]

    def finish(self) -> str:
        """Quit (every sub-interpreter closed); exit 0 and its stderr."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        assert self.line() == "bye\n", self.stderr()
        rc = self.proc.wait(timeout=60)
        assert rc == 0, (rc, self.stderr())
        assert self._lines.get(timeout=10) == ""   # stdout closed: the pump is done
        return self.stderr()


def _pump(stream: Any, sink: Any) -> None:
    for line in iter(stream.readline, ""):
        sink(line)
    sink("")


def verdicts(result: Optional[Dict[str, Any]]) -> Dict[int, str]:
    """An apply/revert result's (or refusal's details') per-interpreter states, by id."""
    rows = (result or {}).get("interpreters")
    assert isinstance(rows, list) and rows and rows[0]["id"] == 0, result
    return {int(r["id"]): str(r["state"]) for r in rows}
