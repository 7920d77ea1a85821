"""What exists before a patch, in real processes under load, through the CLI (issue 21).

* Objects: a server keeps one ``Limiter`` built at start-up and a thread that uses it
  without pause. v2 gives ``Limiter.__init__`` a limit (a new keyword's default) that the
  fixed ``allow()`` reads, and a ``Session`` a counter that it keeps. The derived limit is
  applied while the thread runs: it never raises, and the old limiter enforces the limit
  from the next call on; the counter refuses (SUT-E209, naming the class, the attribute
  and the count) while a session is alive, and the process keeps running v1 untouched.
* Frames: an asyncio line server whose handler calls ``check(line)``; v2 makes it
  ``check(line, limit)``. With connections suspended in the old handler and a client
  sending on each of them, apply refuses (SUT-E210, naming the handler) and no exchange
  fails; once those connections closed, the same patch applies. A worker thread looping
  in the old caller is refused the same way, named with its thread and line, and keeps
  processing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, wait_for
from signing import signed

pytestmark = pytest.mark.slow


def cli(targets: Targets, *args: str) -> Tuple[int, Dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "suture", *args, "--json"],
                          env=targets.env(), capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout)


def build(tmp_path: Path, name: str, v1: str, v2: str) -> Path:
    for tag, src in (("v1", v1), ("v2", v2)):
        (tmp_path / tag).mkdir()
        (tmp_path / tag / f"{name}.py").write_text(src, encoding="utf-8")
    report = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")))
    patch = tmp_path / "fix.suture"
    patch.write_bytes(signed(report.data))
    return patch


# -- objects --------------------------------------------------------------------

OBJ_V1 = '''
import sys, threading, time

DEFAULT_LIMIT = 3


class Limiter:
    def __init__(self, name):
        self.name = name

    def allow(self, n):
        return True


class Session:
    def __init__(self):
        self.user = "alice"

    def touch(self):
        return self.user


LIMITER = None
CALLS = []
ERRORS = []


def spin(limiter, stop):
    while not stop.is_set():
        try:
            CALLS.append(limiter.allow(5))
        except Exception as exc:
            ERRORS.append(repr(exc))
        time.sleep(0.0005)


def main():
    global LIMITER
    LIMITER = Limiter("kept")
    session = Session()
    stop = threading.Event()
    t = threading.Thread(target=spin, args=(LIMITER, stop), name="spinner", daemon=True)
    t.start()
    print("READY", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "report":
            recent = CALLS[-50:]
            print(json.dumps({"errors": ERRORS[:5], "calls": len(CALLS),
                              "recent": sorted(set(recent)), "touch": session.touch() if session else None,
                              "limit": getattr(LIMITER, "limit", None)}), flush=True)
        elif cmd == "drop-session":
            session = None
            import gc
            gc.collect()
            print(json.dumps({"dropped": True}), flush=True)


import json
'''

OBJ_V2 = OBJ_V1.replace('''    def __init__(self, name):
        self.name = name

    def allow(self, n):
        return True''', '''    def __init__(self, name, limit=DEFAULT_LIMIT):
        self.name = name
        self.limit = limit

    def allow(self, n):
        return n <= self.limit''').replace('''    def __init__(self):
        self.user = "alice"

    def touch(self):
        return self.user''', '''    def __init__(self):
        self.user = "alice"
        self.touches = 0

    def touch(self):
        self.touches += 1
        return self.user''')

LAUNCH = '''
import sys
import {name}
{name}.main()
'''


class Target:
    def __init__(self, targets: Targets, tmp_path: Path, name: str) -> None:
        (tmp_path / "app.py").write_text(LAUNCH.format(name=name), encoding="utf-8")
        self.proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable,
                                   "app.py"], targets.env([str(tmp_path / "v1")]),
                                  cwd=tmp_path, stdin=subprocess.PIPE)
        targets.wait_agent(self.proc.pid, self.proc)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "READY"

    def ask(self, cmd: str) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]


def test_objects_built_before_the_patch_are_derived_under_load_or_refused_by_name(
        targets: Targets, tmp_path: Path):
    patch = build(tmp_path, "objapp", OBJ_V1, OBJ_V2)
    app = Target(targets, tmp_path, "objapp")
    pid = ["--pid", str(app.proc.pid)]
    wait_for(lambda: app.ask("report")["calls"] > 100, "the spinner's calls")

    # A live Session lacks the counter the fixed touch() keeps: refused, nothing changed.
    code, out = cli(targets, "apply", str(patch), *pid)
    assert code == 2, out
    row = out["processes"][0]
    assert row["outcome"] == "refused" and row["code"] == "SUT-E209", row
    assert "objapp:Session" in row["reason"] and "touches" in row["reason"], row
    report = app.ask("report")
    assert report["errors"] == [] and report["recent"] == [True] and report["limit"] is None

    # Once the session is gone, the patch applies while the spinner keeps calling the
    # limiter built before it: the limit is derived on its first read, nothing raises.
    assert app.ask("drop-session") == {"dropped": True}
    code, out = cli(targets, "apply", str(patch), *pid)
    assert code == 0 and out["processes"][0]["outcome"] == "applied", out
    applied = app.ask("report")["calls"]
    wait_for(lambda: app.ask("report")["calls"] > applied + 200, "calls after the apply")
    report = app.ask("report")
    assert report["errors"] == [], report
    assert report["recent"] == [False] and report["limit"] == 3, report   # 5 > limit 3

    code, out = cli(targets, "revert", out["patch"], *pid)
    assert code == 0 and out["processes"][0]["outcome"] == "reverted", out
    reverted = app.ask("report")["calls"]
    wait_for(lambda: app.ask("report")["calls"] > reverted + 200, "calls after the revert")
    report = app.ask("report")
    assert report["errors"] == [] and report["recent"] == [True], report
    assert app.proc.poll() is None


# -- frames: asyncio connections suspended in the old handler ---------------------

ASYNC_V1 = '''
import asyncio
import os


def check(line):
    return not line.startswith("/")


async def handle(reader, writer):
    n = 0
    while True:
        data = await reader.readline()
        if not data:
            break
        n += 1
        verdict = "safe" if check(data.decode().strip()) else "unsafe"
        writer.write(("%d %s\\n" % (n, verdict)).encode())
        await writer.drain()
    writer.close()


async def serve(port_file):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


def main():
    import sys
    print("READY", flush=True)
    asyncio.run(serve(sys.argv[1]))
'''

ASYNC_V2 = ASYNC_V1.replace('''def check(line):
    return not line.startswith("/")''', '''def check(line, limit):
    return len(line) <= limit and not line.startswith("/") and ".." not in line''').replace(
    "check(data.decode().strip())", "check(data.decode().strip(), 64)")

LAUNCH_ARGV = '''
import sys
import {name}
{name}.main()
'''


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def ask(self) -> Tuple[int, bool]:
        self.sock.sendall(b"../secret\n")
        reply = self.file.readline()
        if not reply.endswith(b"\n"):
            raise ConnectionError(f"connection dropped (got {reply!r})")
        n, verdict = reply.decode().split()
        return int(n), verdict == "safe"

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_asyncio_handlers_suspended_in_an_old_caller_refuse_then_apply_once_closed(
        targets: Targets, tmp_path: Path):
    patch = build(tmp_path, "lineapp", ASYNC_V1, ASYNC_V2)
    (tmp_path / "app.py").write_text(LAUNCH_ARGV.format(name="lineapp"), encoding="utf-8")
    port_file = tmp_path / "port"
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable, "app.py",
                          str(port_file)], targets.env([str(tmp_path / "v1")]), cwd=tmp_path)
    targets.wait_agent(proc.pid, proc)
    wait_for(lambda: port_file.exists(), "server port", proc=proc)
    port = int(port_file.read_text())
    pid = ["--pid", str(proc.pid)]

    conns = [Conn(port) for _ in range(10)]
    answers: List[Tuple[int, int, bool]] = []
    failures: List[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for i, c in enumerate(conns):
                try:
                    n, safe = c.ask()
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    failures.append(f"conn {i}: {exc!r}")
                    return
                answers.append((i, n, safe))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(answers) > 100 or failures, "load before the apply")
        code, out = cli(targets, "apply", str(patch), *pid)
        assert code == 2, out
        row = out["processes"][0]
        assert row["outcome"] == "refused" and row["code"] == "SUT-E210", row
        assert "lineapp:handle" in row["reason"] and "limit" in row["reason"], row
        seen = len(answers)
        wait_for(lambda: len(answers) > seen + 100 or failures, "load after the refusal")
    finally:
        stop.set()
        t.join(30)
    assert failures == [], failures[:5]
    for i in range(len(conns)):   # every connection counted on, no reset, no gap
        ns = [n for j, n, _ in answers if j == i]
        assert ns == list(range(1, len(ns) + 1)), (i, ns[:10])
    assert {safe for _, _, safe in answers} == {True}   # v1 throughout: nothing changed

    for c in conns:
        c.close()
    code, out = cli(targets, "apply", str(patch), *pid, "--wait-quiescent", "10")
    assert code == 0 and out["processes"][0]["outcome"] == "applied", out
    fresh = Conn(port)
    assert fresh.ask() == (1, False)   # the fixed check, reached through the new handler
    fresh.close()
    assert proc.poll() is None


# -- frames: a worker thread that never leaves its loop ------------------------------

WORKER_V1 = '''
import json, queue, sys, threading

JOBS = queue.Queue()


def clean(s):
    return s.strip()


def worker():
    while True:
        item = JOBS.get()
        print(json.dumps({"cleaned": clean(item)}), flush=True)


def main():
    threading.Thread(target=worker, name="cleaner", daemon=True).start()
    print("READY", flush=True)
    for line in sys.stdin:
        JOBS.put(line)
'''

WORKER_V2 = WORKER_V1.replace('''def clean(s):
    return s.strip()''', '''def clean(s, limit):
    return s.strip()[:limit]''').replace("clean(item)", "clean(item, 3)")


def test_a_worker_looping_in_an_old_caller_is_named_and_keeps_working(
        targets: Targets, tmp_path: Path):
    patch = build(tmp_path, "workapp", WORKER_V1, WORKER_V2)
    (tmp_path / "app.py").write_text(LAUNCH.format(name="workapp"), encoding="utf-8")
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable, "app.py"],
                         targets.env([str(tmp_path / "v1")]), cwd=tmp_path,
                         stdin=subprocess.PIPE)
    targets.wait_agent(proc.pid, proc)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "READY"

    def clean(text: str) -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(text + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())["cleaned"]

    assert clean("  abcdef  ") == "abcdef"
    started = time.monotonic()
    code, out = cli(targets, "apply", str(patch), "--pid", str(proc.pid))
    assert code == 2, out
    row = out["processes"][0]
    assert row["code"] == "SUT-E210", row
    assert "workapp:worker" in row["reason"] and "(cleaner)" in row["reason"], row
    assert "at line" in row["reason"], row
    assert time.monotonic() - started >= 2.0   # it waited for the frame before refusing
    assert clean("  abcdef  ") == "abcdef"    # still v1, still working
    assert proc.poll() is None
