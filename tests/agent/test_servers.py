"""Suture on real servers: Flask under gunicorn (4 forked workers) and FastAPI under uvicorn,
patched and reverted with the CLI while concurrent HTTP load runs against them.

What is proved, per server: zero failed requests across the apply and the revert windows,
every worker's agent reports the patch, every request started after `suture apply`
returned gets the fixed behaviour (and the old one after `suture revert`), both in a helper
the route calls and in the body of the route function itself (already registered with the
framework, so it is patched in place, not re-registered), and the
per-worker in-memory request counter never resets (strictly increasing per worker as seen
by each client thread, never a repeated value). Load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, result, wait_for
from benchmarks.procs import answers, children, free_port
from signing import signed

pytestmark = pytest.mark.slow

# v1 has a path-check bug: "../" is accepted. v2 rejects it. STATE is per-process memory.
FLASK_V1 = '''
import os
from flask import Flask, jsonify, request

app = Flask(__name__)
STATE = {"n": 0}


def is_safe(path):
    return not path.startswith("/")


@app.route("/check")
def check():
    STATE["n"] += 1
    return jsonify(pid=os.getpid(), n=STATE["n"], safe=is_safe(request.args.get("p", "")))
'''

FASTAPI_V1 = '''
import os
from fastapi import FastAPI

app = FastAPI()
STATE = {"n": 0}


def is_safe(path):
    return not path.startswith("/")


@app.get("/check")
async def check(p: str = ""):
    STATE["n"] += 1
    return {"pid": os.getpid(), "n": STATE["n"], "safe": is_safe(p)}
'''


def fixed(src: str) -> str:
    """v2: is_safe() rejects "..", and the route function the framework registered at import
    (Flask's view_functions entry, FastAPI's route endpoint) answers with "v": 2."""
    out = src.replace('    return not path.startswith("/")',
                      '    return not path.startswith("/") and ".." not in path.split("/")')
    assert out != src
    routed = out.replace('safe=is_safe(request.args.get("p", "")))',
                         'safe=is_safe(request.args.get("p", "")), v=2)')
    routed = routed.replace('"safe": is_safe(p)}', '"safe": is_safe(p), "v": 2}')
    assert routed != out
    return routed


THREADS = 8
PER_THREAD = 4000          # bound on requests per thread per window
WINDOW_LIMIT = 60.0        # bound on seconds per window


class Load:
    """THREADS client threads, each with its own keep-alive connection, until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        # thread, t0, t1, pid, n, safe, v (the route function's version: 1 unless it says 2)
        self.rows: List[Tuple[int, float, float, int, int, bool, int]] = []
        self.failures: List[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(THREADS)]
        self.started = time.monotonic()

    def _run(self, i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for _ in range(PER_THREAD):
                if self.stop.is_set() or time.monotonic() - self.started > WINDOW_LIMIT:
                    return
                t0 = time.monotonic()
                try:
                    conn.request("GET", "/check?p=../secret")
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                    doc = json.loads(body)
                    row = (i, t0, time.monotonic(), int(doc["pid"]), int(doc["n"]),
                           bool(doc["safe"]), int(doc.get("v", 1)))
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    with self.lock:
                        self.failures.append(f"thread {i}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                with self.lock:
                    self.rows.append(row)
        finally:
            conn.close()

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def count(self) -> int:
        with self.lock:
            return len(self.rows) + len(self.failures)

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(WINDOW_LIMIT + 30)


def suture(targets: Targets, *args: str) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "suture", *args, "--json"],
                          env=targets.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def check_window(load: Load, started_at: float, switched_at: float, want_safe: bool,
                 pids: List[int], before_n: Dict[int, int]) -> Dict[int, int]:
    assert load.failures == [], load.failures[:5]
    # Requests finished before the CLI started still had the old behaviour.
    before = [r for r in load.rows if r[2] < started_at]
    assert before, "no request finished before the switch"
    assert {r[5] for r in before} == {not want_safe}
    assert {r[6] for r in before} == {2 if want_safe else 1}  # v2 is the one that rejects "../"
    # Every request started after the CLI returned has the new behaviour.
    after = [r for r in load.rows if r[1] > switched_at]
    assert after, "no request started after the switch"
    assert {r[5] for r in after} == {want_safe}
    # ...including the body of the route function itself, patched in place where the
    # framework registered it.
    assert {r[6] for r in after} == {1 if want_safe else 2}
    # Counters never reset: per (thread, pid) strictly increasing, per pid never repeated,
    # and above whatever an earlier window saw.
    last: Dict[Tuple[int, int], int] = {}
    seen: Dict[int, set] = {}
    for thread, _t0, _t1, pid, n, _safe, _v in load.rows:
        assert pid in pids, (pid, pids)
        assert n > last.get((thread, pid), before_n.get(pid, 0)), (thread, pid, n)
        last[(thread, pid)] = n
        assert n not in seen.setdefault(pid, set()), (pid, n)
        seen[pid].add(n)
    return {pid: max(ns) for pid, ns in seen.items()}


def stop_server(proc: subprocess.Popen, workers: List[int]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_server_scenario(targets: Targets, tmp_path: Path, v1_src: str, argv_tail: List[str],
                        n_workers: int, port: int) -> Dict[str, Any]:
    for name, src in (("v1", v1_src), ("v2", fixed(v1_src))):
        pkg = tmp_path / name / "srvapp"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "web.py").write_text(src, encoding="utf-8")
    report = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")))
    patch_file = tmp_path / "fix.suture"
    patch_file.write_bytes(signed(report.data))

    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "suture", "run", "--", sys.executable, "-m",
                             *argv_tail], env=targets.env([str(tmp_path / "v1")]),
                            cwd=str(tmp_path / "v1"), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    workers: List[int] = []
    try:
        def ready() -> Optional[List[int]]:
            if proc.poll() is not None:
                pytest.fail(f"server exited {proc.returncode}:\n"
                            + (tmp_path / "server.log").read_text())
            kids = [proc.pid] if n_workers == 0 else children(proc.pid)
            want = 1 if n_workers == 0 else n_workers
            if len(kids) != want or not all(os.path.exists(targets.sock(k)) for k in kids):
                return None
            return kids if answers(port, "/check?p=warmup") else None

        workers[:] = wait_for(ready, "server workers with agents", timeout=60)
        all_pids = sorted(set(workers) | {proc.pid})
        pid_args = [a for pid in all_pids for a in ("--pid", str(pid))]

        stats: Dict[str, Any] = {"workers": len(workers)}
        with Load(port) as load:
            wait_for(lambda: load.count() >= 300, "load before apply")
            started = time.monotonic()
            applied = suture(targets, "apply", str(patch_file), *pid_args)
            switched = time.monotonic()
            wait_for(lambda: sum(1 for r in list(load.rows) if r[1] > switched) >= 300,
                     "load after apply")
        rows = {r["pid"]: r for r in applied["processes"]}
        for pid in workers:
            assert rows[pid]["outcome"] == "applied", rows[pid]
        if n_workers:  # the master never imports the app (no --preload)
            assert rows[proc.pid]["outcome"] == "pending import", rows[proc.pid]
        top = check_window(load, started, switched, False, workers, {})
        stats["apply"] = {"requests": len(load.rows), "failed": len(load.failures),
                          "served_by": len({r[3] for r in load.rows}),
                          "cli_s": round(switched - started, 3),
                          "pause_ms": [rows[p]["result"].get("pause_ns", 0) / 1e6
                                       for p in workers]}
        for pid in workers:
            ids = [p["id"] for p in result(targets.sock(pid), "status")["patches"]]
            assert ids == [applied["patch"]], (pid, ids)

        with Load(port) as load:
            wait_for(lambda: load.count() >= 300, "load before revert")
            started = time.monotonic()
            reverted = suture(targets, "revert", applied["patch"], *pid_args)
            switched = time.monotonic()
            wait_for(lambda: sum(1 for r in list(load.rows) if r[1] > switched) >= 300,
                     "load after revert")
        rows = {r["pid"]: r for r in reverted["processes"]}
        for pid in workers:
            assert rows[pid]["outcome"] == "reverted", rows[pid]
        check_window(load, started, switched, True, workers, top)
        stats["revert"] = {"requests": len(load.rows), "failed": len(load.failures),
                           "served_by": len({r[3] for r in load.rows}),
                           "cli_s": round(switched - started, 3),
                           "pause_ms": [rows[p]["result"].get("pause_ns", 0) / 1e6
                                        for p in workers]}
        for pid in workers:
            assert result(targets.sock(pid), "status")["patches"] == [], pid
        assert proc.poll() is None and children(proc.pid) == (workers if n_workers else [])
        return stats
    finally:
        stop_server(proc, workers if n_workers else [])
        log.close()


def _report(name: str, stats: Dict[str, Any]) -> None:
    sys.stderr.write(f"\n{name} {sys.version_info[:2]}: {json.dumps(stats)}\n")


def test_flask_under_gunicorn_with_4_workers_is_patched_and_reverted_under_load(
        targets: Targets, tmp_path: Path):
    port = free_port()
    stats = run_server_scenario(
        targets, tmp_path, FLASK_V1,
        ["gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path / "v1"),
         "srvapp.web:app"], 4, port)
    _report("gunicorn", stats)


def test_fastapi_under_uvicorn_is_patched_and_reverted_under_load(
        targets: Targets, tmp_path: Path):
    port = free_port()
    stats = run_server_scenario(
        targets, tmp_path, FASTAPI_V1,
        ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
         "srvapp.web:app"], 0, port)
    _report("uvicorn", stats)
