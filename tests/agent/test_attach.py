"""``suture attach`` against real processes started without Suture.

Each target runs in a foreign environment (Suture not importable), does real
work whose result it checks itself, and must finish exactly as it would have
without the attach: same output, exit 0, nothing on stderr. The targets cover
the states the issue names: busy in a pure-Python loop, blocked in
``time.sleep``, in socket I/O, in a lock wait, many threads, and inside long C
calls (where attach must time out without harm, or get in through another
thread's safe point).

On 3.14+ attach tries ``sys.remote_exec`` first and falls back to gdb when the
main thread does not run its script promptly; the tests check behaviour, the
same on every version, and look at what gdb reported only where gdb got in.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from agentutil import SRC, Targets, result, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("gdb") is None,
    reason="attach before Python 3.14 needs Linux and gdb")


def foreign_env(targets: Targets, *paths: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SUTURE_AGENT", "PYTHONSTARTUP", "PYTHONWARNINGS")}
    env.update(PYTHONDONTWRITEBYTECODE="1", SUTURE_RUNTIME_DIR=str(targets.rundir),
               SUTURE_STATE_DIR=str(targets.root / "state"))
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def start(targets: Targets, code: str, *paths: str, python: str = sys.executable,
          no_remote_exec: bool = False):
    """Start a target; return (proc, first line it printed), the line after 'ready'.

    ``no_remote_exec``: the target refuses ``sys.remote_exec`` (3.14+), so that a test of
    the gdb route's own refusals gets them, not a late success through the other route."""
    script = targets.script(code)
    env = foreign_env(targets, *paths)
    if no_remote_exec:
        env["PYTHON_DISABLE_REMOTE_DEBUG"] = "1"
    proc = targets.start([python, str(script)], env)
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"target did not start: {line}{out}\n{err}")
    return proc, line.split()[1:]


def attach(pid: int, *args: str, env: Dict[str, str] = None) -> Tuple[int, Dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "suture", "attach", str(pid), "--json", *args],
                         capture_output=True, text=True, timeout=120,
                         env=env if env is not None else dict(os.environ))
    assert out.stdout, out.stderr
    rows = json.loads(out.stdout)["processes"]
    assert len(rows) == 1
    return out.returncode, rows[0]


def finish(proc: subprocess.Popen, timeout: float = 60) -> List[str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and err == "", (proc.returncode, out, err)
    return out.splitlines()


def gdb_details(row: Dict[str, Any]) -> Any:
    """What gdb reported when it got the stub in (always before 3.14), else None."""
    if sys.version_info < (3, 14):
        assert row["method"] == "gdb", row
    return row["details"] if row["method"] == "gdb" else row["details"].get("gdb")


def hello(targets: Targets, pid: int) -> Dict[str, Any]:
    info = result(targets.sock(pid), "hello")
    assert info["pid"] == pid
    return info  # type: ignore[no-any-return]


def test_busy_pure_python_loop(targets: Targets):
    stop = targets.root / "stop"
    proc, _ = start(targets, f"""
        import os
        print("ready", flush=True)
        n = total = 0
        while True:
            total += n
            n += 1
            if n % 100000 == 0 and os.path.exists({str(stop)!r}):
                break
        print(n, total, total == n * (n - 1) // 2)
    """)
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached" and row["method"] in ("gdb", "remote_exec"), row
    got = gdb_details(row)
    assert got is None or (got["where"] == "PyErr_CheckSignals" and not got["woke"]), row
    info = hello(targets, proc.pid)
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    stop.touch()
    assert finish(proc)[0].endswith(" True")


def test_main_thread_asleep_is_woken_and_sleeps_its_full_time(targets: Targets):
    proc, _ = start(targets, """
        import time
        print("ready", flush=True)
        t0 = time.monotonic()
        time.sleep(4)
        print(round(time.monotonic() - t0, 3))
    """)
    t0 = time.monotonic()
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    got = gdb_details(row)   # sys.remote_exec alone cannot get in: gdb woke it
    assert got["woke"] is True and got["where"] == "PyErr_CheckSignals", row
    assert time.monotonic() - t0 < 3.5   # did not wait for the sleep to end
    hello(targets, proc.pid)
    assert float(finish(proc)[0]) >= 4.0  # the sleep was not shortened


def test_blocked_in_accept_and_in_a_lock_wait(targets: Targets):
    # Main thread in Event.wait() (a lock wait), a second thread in accept(): no thread
    # runs Python until a client comes. Attach must get in, and the server must still work.
    proc, (port,) = start(targets, """
        import socket, threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        done = threading.Event()
        got = []
        def serve():
            conn, _ = srv.accept()
            data = conn.recv(100)
            conn.sendall(data.upper())
            conn.close()
            got.append(data)
            done.set()
        threading.Thread(target=serve).start()
        print("ready", srv.getsockname()[1], flush=True)
        done.wait()
        print("served", got[0].decode())
    """)
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    hello(targets, proc.pid)
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as c:
        c.sendall(b"ping")
        assert c.recv(100) == b"PING"
    assert finish(proc) == ["served ping"]


BLOCKED = {
    # single-threaded, in accept(): nothing runs Python until a client comes
    "accept-alone": """
        import socket
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        print("ready", srv.getsockname()[1], flush=True)
        conn, _ = srv.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()
        print("served")
    """,
    # single-threaded, in a lock wait that must still last its full time
    "lock-alone": """
        import threading, time
        lock = threading.Lock()
        lock.acquire()
        print("ready", flush=True)
        t0 = time.monotonic()
        got = lock.acquire(timeout=4)
        print(got, time.monotonic() - t0 >= 4)
    """,
    # asleep while a background thread wakes every 10 ms (not a CPU-bound one: with a
    # thread that never blocks, every import the bootstrap thread makes waits out a GIL
    # switch interval, the convoy effect, and attach takes seconds under load)
    "sleep-beside-ticking-thread": """
        import threading, time
        stop, n = [], [0]
        def tick():
            while not stop:
                n[0] += 1
                time.sleep(0.01)
        t = threading.Thread(target=tick)
        t.start()
        print("ready", flush=True)
        t0 = time.monotonic()
        time.sleep(4)
        slept = time.monotonic() - t0
        stop.append(1)
        t.join()
        print(slept >= 4, n[0] > 0)
    """,
}


@pytest.mark.parametrize("kind", sorted(BLOCKED))
def test_main_thread_blocked_attach_gets_in_without_waiting(targets: Targets, kind: str):
    # sys.remote_exec (3.14+) runs its script only in the main thread at its next safe
    # point, which a blocked main thread does not reach: attach must get in anyway, well
    # before the block ends, and the blocking call must end as it would have.
    proc, out = start(targets, BLOCKED[kind])
    t0 = time.monotonic()
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    assert time.monotonic() - t0 < 3.5, row   # the lock wait and the sleep last 4 s
    hello(targets, proc.pid)
    if kind == "accept-alone":
        with socket.create_connection(("127.0.0.1", int(out[0])), timeout=10) as c:
            c.sendall(b"ping")
            assert c.recv(100) == b"PING"
        assert finish(proc) == ["served"]
    else:
        assert finish(proc) == ["False True" if kind == "lock-alone" else "True True"]


@pytest.mark.skipif(sys.version_info < (3, 14),
                    reason="only sys.remote_exec (3.14+) queues a script; before, a timeout "
                           "leaves gdb's harmless signal check (test_long_c_call_...)")
def test_no_queued_script_acts_after_a_reported_timeout(targets: Targets):
    stop = targets.root / "stop"
    proc, _ = start(targets, f"""
        import os, time
        print("ready", flush=True)
        time.sleep(2.5)
        print("awake", flush=True)
        while not os.path.exists({str(stop)!r}):
            time.sleep(0.01)
        print("end")
    """)
    # Without gdb, sys.remote_exec is the only route, and its script cannot run before
    # the sleep ends: attach must report the timeout...
    rc, row = attach(proc.pid, "--timeout", "1", env=dict(os.environ, PATH="/nonexistent"))
    assert rc == 1 and row["error"]["code"] == "SUT-E634", row
    assert "gdb" in row["error"]["message"] and "is not installed" in row["error"]["message"]
    # ...and the script, which runs once the main thread is back in Python (and removes
    # its own file first), must then do nothing: no agent, no answer, nothing left.
    assert proc.stdout.readline() == "awake\n"
    wait_for(lambda: not list(targets.rundir.glob(f"attach-{proc.pid}-*.py")),
             "the queued script to run", timeout=10, proc=proc)
    end = time.monotonic() + 1.0   # what it would start takes well under that
    while time.monotonic() < end:
        assert not os.path.exists(targets.sock(proc.pid))
        time.sleep(0.05)
    assert not list(targets.rundir.glob("attach-*")), list(targets.rundir.iterdir())
    # A later attach works normally, not "already"; still without gdb: the main thread
    # runs Python now, so sys.remote_exec alone gets in.
    rc, row = attach(proc.pid, env=dict(os.environ, PATH="/nonexistent"))
    assert rc == 0 and row["outcome"] == "attached", row
    hello(targets, proc.pid)
    stop.touch()
    assert finish(proc) == ["end"]


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 9), (3, 14)),
                    reason="one run per route, gdb alone (3.9) and sys.remote_exec first "
                           "(3.14): CI's time budget; what it checks is plain file operations")
def test_a_bootstrap_too_slow_to_answer_starts_nothing_afterwards(targets: Targets):
    # The main thread is inside `import json` (the application's own json module, which
    # waits for a file, then hands over to the real one), so the bootstrap thread's own
    # `import json` waits for it. Attach gives up waiting for the answer (SUT-E634); when
    # the import completes, the bootstrap must not start an agent after all.
    go, stop, shadow = targets.root / "go", targets.root / "stop", targets.root / "shadow"
    shadow.mkdir()
    (shadow / "json.py").write_text(textwrap.dedent(f"""
        import os, sys, time
        print("importing", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
        sys.path.remove({str(shadow)!r})
        del sys.modules["json"]
        import json   # the real one, which the import system then keeps as "json"
    """), encoding="utf-8")
    proc, _ = start(targets, f"""
        import os, sys, time
        print("ready", flush=True)
        sys.path.insert(0, {str(shadow)!r})
        import json
        assert json.loads("[1]") == [1]
        print("imported", flush=True)
        while not os.path.exists({str(stop)!r}):
            time.sleep(0.01)
        print("end")
    """)
    assert proc.stdout.readline() == "importing\n"
    rc, row = attach(proc.pid, "--timeout", "1")
    assert rc == 1 and row["error"]["code"] == "SUT-E634", row
    assert "it will stop before starting an agent" in row["error"]["message"], row
    go.touch()
    assert proc.stdout.readline() == "imported\n"
    end = time.monotonic() + 1.0   # the bootstrap goes on now: it must start nothing
    while time.monotonic() < end:
        assert not os.path.exists(targets.sock(proc.pid))
        time.sleep(0.05)
    assert not list(targets.rundir.glob(f"attach-{proc.pid}-*.json"))
    rc, row = attach(proc.pid)   # a later attach works normally: not "already"
    assert rc == 0 and row["outcome"] == "attached", row
    hello(targets, proc.pid)
    stop.touch()
    assert finish(proc) == ["end"]


def test_many_threads(targets: Targets):
    stop = targets.root / "stop"
    proc, _ = start(targets, f"""
        import os, threading, time
        counts = [0] * 16
        gate = threading.Event()
        def work(i):
            while not os.path.exists({str(stop)!r}):
                counts[i] += 1
                if i % 4 == 1:
                    time.sleep(0.001)
                elif i % 4 == 2:
                    gate.wait(0.05)
                else:
                    sum(range(1000))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        print("ready", flush=True)
        for t in threads:
            t.join()
        print(all(c > 0 for c in counts), threading.active_count())
    """)
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    hello(targets, proc.pid)
    stop.touch()
    # all workers ran and ended; left: the main thread and the agent's
    assert finish(proc) == ["True 2"]


@pytest.mark.parametrize("kind", ["foreign-sleep", "cpu"])
def test_long_c_call_times_out_without_harm_then_attach_succeeds(targets: Targets, kind: str):
    # The main thread is inside one long C call and no other thread runs Python: there is
    # no safe point. Attach must give up within its timeout and change nothing; the call
    # completes with its normal result; a later attach (the program back in Python) works.
    call = {
        # libc's sleep through ctypes: a syscall Suture must not interrupt (not CPython's)
        "foreign-sleep": "import ctypes\nr = ctypes.CDLL(None).sleep(3)\nok = r == 0",
        # one C call that holds the GIL for several seconds: no eval-breaker check inside
        # (calibrated before "ready", with a floor, so a loaded machine cannot shorten it)
        "cpu": "ok = sum(range(n)) == n * (n - 1) // 2",
    }[kind]
    calibrate = ("import time\nt = time.perf_counter(); sum(range(10**6)); "
                 "dt = time.perf_counter() - t\nn = max(int(10**6 * 5 / dt), 2 * 10**8)\n")
    proc, _ = start(targets, calibrate + "print('ready', flush=True)\n" + call + """
print(ok, flush=True)
import time
time.sleep(5)
print("end")
""")
    t0 = time.monotonic()
    rc, row = attach(proc.pid, "--timeout", "1")
    took = time.monotonic() - t0
    assert rc == 1 and row["outcome"] == "failed", row
    assert row["error"]["code"] == "SUT-E634", row
    assert took < 10, took
    assert not os.path.exists(targets.sock(proc.pid))
    assert proc.stdout.readline() == "True\n"   # the C call finished, undisturbed
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    hello(targets, proc.pid)
    assert finish(proc) == ["end"]


def test_c_call_in_main_thread_other_thread_gives_the_safe_point(targets: Targets):
    proc, _ = start(targets, """
        import ctypes, threading, time
        stop = []
        def tick():
            while not stop:
                time.sleep(0.01)
        t = threading.Thread(target=tick)
        t.start()
        print("ready", flush=True)
        r = ctypes.CDLL(None).sleep(3)
        stop.append(1)
        t.join()
        print(r)
    """)
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "attached", row
    assert gdb_details(row)["where"] == "PyEval_SaveThread", row
    assert row["seconds"] < 2.5   # did not wait for the main thread's C call
    hello(targets, proc.pid)
    assert finish(proc) == ["0"]


def test_attached_process_takes_a_patch(targets: Targets, tmp_path: Path):
    from test_agent import patch_b64

    b64 = patch_b64(tmp_path)
    stop = targets.root / "stop"
    proc, _ = start(targets, f"""
        import os, time
        from tiny import calc
        print("ready", flush=True)
        while calc.value() == 1:
            time.sleep(0.01)
        print("now", calc.value(), flush=True)
        while not os.path.exists({str(stop)!r}):  # stay up: the agent still has to answer
            time.sleep(0.01)
    """, str(tmp_path / "v1"))
    rc, row = attach(proc.pid)
    assert rc == 0, row
    applied = result(targets.sock(proc.pid), "apply", patch=b64)
    assert applied["modules"] == {"tiny.calc": "applied"}, applied
    assert proc.stdout.readline() == "now 2\n"
    stop.touch()
    assert finish(proc) == []


def _pending_connections(pid: int, path: str) -> int:
    """Connections to the agent socket ``path`` of ``pid`` that the agent has not accepted
    yet (state 02, SS_CONNECTING, in /proc/net/unix). The kernel shows a socket by the
    name it was bound to: the agent binds a temporary name and renames it."""
    names = (path, f"{path}.{pid}.tmp")
    with open("/proc/net/unix", encoding="utf-8") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if len(r) >= 8 and r[7] in names and r[5] == "02")


@pytest.mark.slow
def test_a_slow_hello_is_not_a_failure_and_the_installed_patch_applies(
        targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The case: the agent applies the host's installed patch before it serves its
    # first request, so its hello comes late; attach said "did not answer hello within
    # 0.5 s" (SUT-E612) although it had attached and the patch was applied. Here the
    # apply is slowed by something real: the application is inside a unit of work
    # (suture.runtime.unit()), and an apply never commits inside one.
    from test_store_live import build, install

    monkeypatch.setenv("SUTURE_STATE_DIR", str(targets.root / "state"))  # the target's store
    patch = install(build(tmp_path, "1", "2"))
    go, stop = targets.root / "go", targets.root / "stop"
    proc, _ = start(targets, f"""
        import os, time
        import suture.runtime as rt
        from tiny import calc
        print("ready", flush=True)
        with rt.unit():
            while not os.path.exists({str(go)!r}):
                time.sleep(0.01)
        while calc.value() == 1:
            time.sleep(0.01)
        print("now", calc.value(), flush=True)
        while not os.path.exists({str(stop)!r}):
            time.sleep(0.01)
    """, str(SRC), str(tmp_path / "v1"))
    attaching = subprocess.Popen(
        [sys.executable, "-m", "suture", "attach", str(proc.pid), "--json", "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sock = targets.sock(proc.pid)
        # attach's hello is sent, and the agent, waiting for the unit, does not take it
        wait_for(lambda: _pending_connections(proc.pid, sock), "attach's hello", proc=proc)
        time.sleep(1.0)   # the slowness: twice the 0.5 s the hello was given
        assert _pending_connections(proc.pid, sock) == 1   # still unanswered: a slow hello indeed
        go.touch()
        out, err = attaching.communicate(timeout=120)
    finally:
        if attaching.poll() is None:
            attaching.kill()
            attaching.communicate()
    row = json.loads(out)["processes"][0]
    assert attaching.returncode == 0 and row["outcome"] == "attached", (row, err)
    assert "busy" not in row["details"], row
    assert proc.stdout.readline() == "now 2\n"
    status = result(sock, "status")
    assert [(p["id"], p["modules"]) for p in status["patches"]] \
        == [(patch.id, {"tiny.calc": "applied"})]
    stop.touch()
    assert finish(proc) == []


@pytest.mark.slow
def test_an_agent_too_busy_to_answer_within_the_timeout_is_attached_with_a_note(
        targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # As above, but the unit of work outlasts --timeout: the agent runs (its socket is
    # there), so attach says "attached" and why its hello did not come; exit 0.
    from test_store_live import build, install

    monkeypatch.setenv("SUTURE_STATE_DIR", str(targets.root / "state"))
    install(build(tmp_path, "1", "2"))
    stop = targets.root / "stop"
    proc, _ = start(targets, f"""
        import os, time
        import suture.runtime as rt
        from tiny import calc
        print("ready", flush=True)
        with rt.unit():
            while not os.path.exists({str(stop)!r}):
                time.sleep(0.01)
    """, str(SRC), str(tmp_path / "v1"))
    rc, row = attach(proc.pid, "--timeout", "1")
    assert rc == 0 and row["outcome"] == "attached", row
    assert row["details"]["busy"].startswith("the agent started but did not answer hello "
                                             "within 1 s"), row
    assert row["details"]["hello_error"]["code"] == "SUT-E612", row
    assert os.path.exists(targets.sock(proc.pid))
    hello(targets, proc.pid)   # it answers once its start-up apply gave up on the unit
    stop.touch()
    assert finish(proc) == []


def test_second_attach_says_already(targets: Targets):
    proc, _ = start(targets, "import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    assert attach(proc.pid)[1]["outcome"] == "attached"
    rc, row = attach(proc.pid)
    assert rc == 0 and row["outcome"] == "already", row


def test_attach_from_a_shell_with_another_runtime_dir_finds_the_agent(targets: Targets):
    # The caller's SUTURE_RUNTIME_DIR names another directory than the target's own: the
    # agent attach started (in the target's directory) must still be found, and the
    # second attach must say "already" without injecting again: here it could not even
    # (no gdb on PATH, and before 3.14 no other way in).
    proc, _ = start(targets, "import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    elsewhere = targets.root / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    env = dict(os.environ, SUTURE_RUNTIME_DIR=str(elsewhere))
    rc, row = attach(proc.pid, env=env)
    assert rc == 0 and row["outcome"] == "attached", row
    assert row["socket"] == targets.sock(proc.pid), row
    rc, row = attach(proc.pid, env=dict(env, PATH="/nonexistent"))
    assert rc == 0 and (row["outcome"], row["method"]) == ("already", ""), row
    assert row["socket"] == targets.sock(proc.pid), row
    assert not list(elsewhere.iterdir())
    out = subprocess.run([sys.executable, "-m", "suture", "attach", str(proc.pid)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert (out.returncode, out.stdout) == (
        0, f"PID {proc.pid}: already attached: its agent listens at "
           f"{targets.sock(proc.pid)}\n"), out


def test_refuses_what_is_not_python(targets: Targets):
    proc = targets.start(["sleep", "30"], dict(os.environ))
    rc, row = attach(proc.pid)
    assert rc == 1 and row["error"]["code"] == "SUT-E633", row
    assert "does not look like Python" in row["error"]["message"]
    assert proc.poll() is None


def test_says_so_when_gdb_is_missing(targets: Targets):
    # and, on 3.14+, the target refuses sys.remote_exec: no way in at all
    proc, _ = start(targets, "import time\nprint('ready', flush=True)\ntime.sleep(2)\n"
                             "print('end')\n", no_remote_exec=True)
    rc, row = attach(proc.pid, env=dict(os.environ, PATH="/nonexistent"))
    assert rc == 1 and row["error"]["code"] == "SUT-E632", row
    assert "gdb is not installed" in row["error"]["message"]
    assert finish(proc) == ["end"]


def _gdb_cannot_write_registers(gdb: str) -> bool:
    """Whether ``gdb`` fails an inferior call for want of writing the XSAVE state (gdb 13 on
    CPUs with AMX), tried on a throwaway process of our own."""
    victim = subprocess.Popen(["sleep", "30"])
    try:
        out = subprocess.run([gdb, "-nx", "-batch", "-p", str(victim.pid), "-ex",
                              "call (int)getpid()"], capture_output=True, text=True, timeout=60)
    finally:
        victim.kill()
        victim.wait()
    return "extended state" in out.stdout + out.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/gdb")
                    or not _gdb_cannot_write_registers("/usr/bin/gdb"),
                    reason="the system gdb can write this CPU's registers: nothing to refuse")
def test_a_gdb_that_cannot_write_registers_is_refused_before_any_call(targets: Targets):
    # Before the probe, the half-made call left the registers changed: the target's
    # time.sleep raised OSError(514) and the program died.
    proc, _ = start(targets, "import time\nprint('ready', flush=True)\nt = time.monotonic()\n"
                             "time.sleep(3)\nprint('slept', time.monotonic() - t >= 3)\n",
                    no_remote_exec=True)
    rc, row = attach(proc.pid, env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert rc == 1 and row["error"]["code"] == "SUT-E632", row
    assert "cannot write the registers" in row["error"]["message"]
    assert finish(proc) == ["slept True"]
    assert not os.path.exists(targets.sock(proc.pid))


def test_no_such_process():
    rc, row = attach(2 ** 22 + 12345)
    assert rc == 1 and row["error"]["code"] == "SUT-E630"
    assert "no process has PID" in row["error"]["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to have a second uid")
def test_non_root_caller_may_not_attach_to_roots_process(targets: Targets):
    from suture.tooling.host.attach import AttachRefused, attach as do_attach

    proc, _ = start(targets, "import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - child
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                do_attach(proc.pid, 2)
                msg = "attached?!"
            except AttachRefused as exc:
                msg = f"{exc.code} {exc.message}"
            except BaseException as exc:  # noqa: BLE001
                msg = f"other {type(exc).__name__}: {exc}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    os.waitpid(child, 0)
    assert msg.startswith("SUT-E631 ") and "belongs to uid 0 (root)" in msg, msg
    assert not os.path.exists(targets.sock(proc.pid))


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root and a system Python another uid can run")
def test_root_acts_as_the_targets_user(targets: Targets):
    # The system Python (a stripped, statically linked build: only exported symbols),
    # run as uid 65534. Everything attach creates must belong to that uid.
    base = Path(tempfile.mkdtemp(prefix="suture-attach-"))
    try:
        base.chmod(0o755)
        run = base / "run"
        run.mkdir(mode=0o700)
        os.chown(run, 65534, 65534)
        script = base / "app.py"
        script.write_text("import time\nprint('ready', flush=True)\nt0 = time.monotonic()\n"
                          "time.sleep(3)\nprint(time.monotonic() - t0 >= 3)\n", encoding="utf-8")
        script.chmod(0o644)
        env = {"PATH": "/usr/bin:/bin", "SUTURE_RUNTIME_DIR": str(run), "LANG": "C.UTF-8"}
        proc = subprocess.Popen(["/usr/bin/python3", str(script)], env=env, cwd=str(base),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                user=65534, group=65534, extra_groups=[])
        targets.procs.append(proc)
        assert proc.stdout.readline() == "ready\n"
        rc, row = attach(proc.pid)
        assert rc == 0 and row["outcome"] == "attached", row
        sock = run / f"{proc.pid}.sock"
        assert row["socket"] == str(sock)
        made = [sock, *run.rglob("*")]
        assert made and all(os.lstat(p).st_uid == 65534 for p in made), \
            [(str(p), os.lstat(p).st_uid) for p in made]
        assert not list(run.glob("attach-*"))     # the answer file was removed
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        info = result(str(sock), "hello")          # root may talk to it
        assert info["pid"] == proc.pid
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (0, "True\n", ""), (out, err)
        assert not list(base.glob("*.json")) and sorted(os.listdir(base)) == ["app.py", "run"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


OLD_PYTHONS = [p for p in (os.path.expanduser(f"~/.pyenv/versions/{v}/bin/python{v[:3]}")
                           for v in ("3.8.18", "2.7.18")) if os.path.exists(p)]


@pytest.mark.skipif(not OLD_PYTHONS, reason="no Python older than 3.9 installed")
@pytest.mark.parametrize("python", OLD_PYTHONS)
def test_refuses_a_python_it_does_not_support(targets: Targets, python: str):
    proc = targets.start([python, "-c", "import time; print('ready'); time.sleep(30)"],
                         dict(os.environ, PYTHONPATH=""))
    rc, row = attach(proc.pid)
    version = os.path.basename(python)[len("python"):]
    assert rc == 1 and row["error"]["code"] == "SUT-E633", row
    assert f"runs Python {version}; Suture supports CPython 3.9 to 3.15" in row["error"]["message"]
    assert proc.poll() is None
