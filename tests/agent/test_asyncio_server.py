"""Suture on a stdlib asyncio TCP line server, patched and reverted with the CLI while
long-lived connections opened before the patch keep talking to it.

The server (``asyncio.start_server``) runs one handler coroutine per connection; the
handler loops ``await reader.readline()`` and calls the module-level ``check(line)`` for
every line, with a per-connection counter kept in the coroutine's locals.

What is proved: no connection is dropped and no exchange fails across the apply and the
revert; each connection's counter continues (1, 2, 3, ... with no reset or gap); the SAME
connections, whose handler coroutines stay suspended in the handler's code throughout,
get fixed answers from every line sent after `suture apply` returned and vulnerable ones
after `suture revert` (``check`` is a separate function, so each new call runs its new
code). With only ``check`` changed, ``status`` lists nothing active while the connections
are open (``check`` is on no stack between lines). When v2 also changes the handler's own
body (the reply prefix), ``status`` lists the suspended handler coroutines and their tasks,
the old connections keep the old prefix (running frames finish on old code) while
connections opened after the apply get the new prefix, and after the revert those newer
connections keep the v2 prefix while ``check`` is vulnerable again.
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

from agentutil import Targets, result, wait_for
from signing import signed

pytestmark = pytest.mark.slow

# v1 has a path-check bug: "../" is accepted. v2 rejects it.
APP_V1 = '''
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
        writer.write(("v1 %d %s\\n" % (n, verdict)).encode())
        await writer.drain()
    writer.close()


async def main(port_file):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


def run(port_file):
    asyncio.run(main(port_file))
'''

LAUNCHER = '''
import sys
import lineapp
lineapp.run(sys.argv[1])
'''

N_CONNS = 20
N_NEW = 3
LINE = b"../secret\n"
LIMIT = 60.0


def fixed_check(src: str) -> str:
    out = src.replace('    return not line.startswith("/")',
                      '    return not line.startswith("/") and ".." not in line.split("/")')
    assert out != src
    return out


def fixed_handler(src: str) -> str:
    out = src.replace('("v1 %d %s', '("v2 %d %s')
    assert out != src
    return out


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.n = 0

    def ask(self) -> Tuple[str, int, bool]:
        self.sock.sendall(LINE)
        reply = self.file.readline()
        if not reply.endswith(b"\n"):
            raise ConnectionError(f"connection dropped (got {reply!r})")
        prefix, n, verdict = reply.decode().split()
        assert verdict in ("safe", "unsafe"), reply
        return prefix, int(n), verdict == "safe"

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Load:
    """One client thread sending a line on each connection in turn, until stopped."""

    def __init__(self, conns: List[Conn]) -> None:
        self.conns = conns
        self.stop = threading.Event()
        self.rows: List[Tuple[int, float, float, str, int, bool]] = []  # conn, t0, t1, prefix, n, safe
        self.failures: List[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        while not self.stop.is_set() and time.monotonic() - self.started < LIMIT:
            for i, conn in enumerate(self.conns):
                t0 = time.monotonic()
                try:
                    prefix, n, safe = conn.ask()
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    with self.lock:
                        self.failures.append(f"conn {i}: {exc!r}")
                    return
                with self.lock:
                    self.rows.append((i, t0, time.monotonic(), prefix, n, safe))

    def after(self, t: float) -> List[Tuple[int, float, float, str, int, bool]]:
        with self.lock:
            return [r for r in self.rows if r[1] > t]

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(LIMIT + 30)


def suture(targets: Targets, *args: str, code: int = 0) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "suture", *args, "--json"],
                          env=targets.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def switch(load: Load, targets: Targets, *args: str) -> Tuple[Dict[str, Any], float, float]:
    """Run the CLI while the load runs; return its answer, when it started and returned."""
    wait_for(lambda: len(load.rows) >= 5 * N_CONNS or load.failures, "load before the switch")
    started = time.monotonic()
    answer = suture(targets, *args)
    switched = time.monotonic()
    wait_for(lambda: len(load.after(switched)) >= 5 * N_CONNS or load.failures,
             "load after the switch")
    return answer, started, switched


def run_scenario(targets: Targets, tmp_path: Path, handler_changed: bool) -> None:
    v2 = fixed_check(APP_V1)
    if handler_changed:
        v2 = fixed_handler(v2)
    for name, src in (("v1", APP_V1), ("v2", v2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "lineapp.py").write_text(src, encoding="utf-8")
    report = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")))
    patch_file = tmp_path / "fix.suture"
    patch_file.write_bytes(signed(report.data))
    (tmp_path / "app.py").write_text(LAUNCHER, encoding="utf-8")
    port_file = tmp_path / "port"

    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable,
                          "app.py", str(port_file)], targets.env([str(tmp_path / "v1")]),
                         cwd=tmp_path)
    targets.wait_agent(proc.pid, proc)
    wait_for(lambda: port_file.exists(), "server port", proc=proc)
    port = int(port_file.read_text())
    pid = ["--pid", str(proc.pid)]
    new_prefix = "v2" if handler_changed else "v1"

    old = [Conn(port) for _ in range(N_CONNS)]
    new: List[Conn] = []
    try:
        with Load(old) as load:
            applied, a_started, a_switched = switch(load, targets, "apply", str(patch_file), *pid)
            assert [r["outcome"] for r in applied["processes"]] == ["applied"], applied

            # While the connections are open (handlers suspended in readline()).
            status = result(targets.sock(proc.pid), "status")
            assert [p["id"] for p in status["patches"]] == [applied["patch"]]
            assert not [a for a in status["active"] if "check" in a["qualname"]], status
            if handler_changed:
                # Every old handler is a suspended coroutine inside its task; the one the
                # event loop happens to be running at this instant is also on its thread.
                active = status["active"]
                assert all(a["qualname"].endswith("handle") for a in active), active
                kinds = [a["where"] for a in active]
                assert kinds.count("coroutine") == N_CONNS, active
                assert kinds.count("task") == N_CONNS, active
                threads = [a for a in active if a["where"] == "thread"]
                assert len(threads) <= 1 and all(a["thread"] == "MainThread" for a in threads)
                assert len(active) == 2 * N_CONNS + len(threads), active
            else:
                assert status["active"] == [], status["active"]
            # Handlers suspended in the old code: not protected until they finish (issue 16,
            # "draining": exit 2, the patch's state names them); else fixed, exit 0.
            cli_status = suture(targets, "status", *pid, code=2 if handler_changed else 0)
            [entry] = [e for e in cli_status["patches"] if e["id"] == applied["patch"]]
            [state] = [p["state"] for p in entry["processes"] if p["pid"] == proc.pid]
            assert state == ("draining" if handler_changed else "fixed"), cli_status

            # Connections opened after the apply run the new handler code.
            new = [Conn(port) for _ in range(N_NEW)]
            for conn in new:
                assert conn.ask() == (new_prefix, 1, False)  # "../" rejected

            reverted, r_started, r_switched = switch(load, targets, "revert",
                                                     applied["patch"], *pid)
            assert [r["outcome"] for r in reverted["processes"]] == ["reverted"], reverted
            status = result(targets.sock(proc.pid), "status")
            assert status["patches"] == [] and status["active"] == [], status
            # The newer connections keep running the v2 handler; check() is v1 again.
            for conn in new:
                assert conn.ask() == (new_prefix, 2, True)

        assert load.failures == [], load.failures[:5]
        rows = load.rows
        # Old connections: always the old handler code, whatever check() was.
        assert {r[3] for r in rows} == {"v1"}
        # Fixed from every line sent after apply returned until revert started; vulnerable
        # before apply started and after revert returned.
        # (The vulnerable check calls "../secret" safe.)
        for lo, hi, want in ((0.0, a_started, True), (a_switched, r_started, False),
                             (r_switched, float("inf"), True)):
            window = [r for r in rows if r[1] > lo and r[2] < hi]
            assert {r[0] for r in window} == set(range(N_CONNS)), (lo, hi)
            assert {r[5] for r in window} == {want}, (lo, hi, want)
        # Counters continue: each connection answered 1, 2, 3, ... without reset or gap.
        for i in range(N_CONNS):
            ns = [r[4] for r in rows if r[0] == i]
            assert ns == list(range(1, len(ns) + 1)), (i, ns[:10])
        # Nobody was dropped: every connection still answers, with the next number.
        for i, conn in enumerate(old):
            last = max(r[4] for r in rows if r[0] == i)
            assert conn.ask() == ("v1", last + 1, True)
        assert proc.poll() is None
        sys.stderr.write(f"\nasyncio {sys.version_info[:2]} handler_changed={handler_changed}: "
                         f"{len(rows)} exchanges on {N_CONNS} connections, apply "
                         f"{a_switched - a_started:.3f} s, revert {r_switched - r_started:.3f} s\n")
    finally:
        for conn in old + new:
            conn.close()


def test_asyncio_connections_opened_before_the_patch_get_the_fixed_check(
        targets: Targets, tmp_path: Path):
    run_scenario(targets, tmp_path, handler_changed=False)


def test_asyncio_suspended_handlers_finish_on_old_code_while_new_connections_get_new(
        targets: Targets, tmp_path: Path):
    run_scenario(targets, tmp_path, handler_changed=True)
