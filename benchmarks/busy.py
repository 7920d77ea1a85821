#!/usr/bin/env python3
"""How fast the agent answers in a process whose threads are all busy (issue 16).

One target process per variant, each with the agent and THREADS threads spinning in pure
Python (``while True: x += 1``), importing a one-function module. A variant is a source
tree of the runtime (``--variant NAME=SRC``, e.g. today's main checked out elsewhere
against this checkout's ``src``): the target puts that tree first on ``sys.path``, so it
runs that tree's agent. The client is always this checkout's (the protocol is the same).

Per round, each variant in turn (interleaved; the other targets are stopped with SIGSTOP
while one is measured, so they do not take its CPU): client wall time of ``hello``,
``status``, ``apply`` and ``revert`` (each includes the ``hello`` the client sends first to
prove the process's identity), and the pause the engine reported. Medians over ROUNDS.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/busy.py [--threads 50] [--rounds 5] \\
        [--variant main=/path/to/main/src] [--json OUT]

Without ``--variant`` only this checkout's ``src`` is measured, once with THREADS busy
threads and once with none (the ratio is what busy threads cost the agent).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from suture.runtime.errors import SutureError
from suture.runtime.patchfile import load
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize
from suture.tooling.host import client

SRC = Path(__file__).resolve().parents[1] / "src"

TARGET = """\
import os, sys, threading, time
sys.path[:0] = [{src!r}, {lib!r}]
import busydemo
import suture.agent
suture.agent.start()
def spin():
    x = 0
    while True:
        x += 1
for _ in range({threads}):
    threading.Thread(target=spin, daemon=True).start()
open({ready!r}, "w").close()
while True:
    time.sleep(1)
    busydemo.check(1)
"""


def _target(name: str, src: str, threads: int, root: Path, lib: Path,
            rundir: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    ready = root / f"{name}.ready"
    script = root / f"{name}.py"
    script.write_text(TARGET.format(src=src, lib=str(lib), threads=threads, ready=str(ready)),
                      encoding="utf-8")
    env = dict(os.environ, SUTURE_RUNTIME_DIR=str(rundir), SUTURE_STATE_DIR=str(root / "state"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    deadline = time.monotonic() + 60
    while not (ready.exists() and (rundir / f"{proc.pid}.sock").exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"target {name} did not start")
        time.sleep(0.05)
    return proc


OP_TIMEOUT = 30.0


def _timed(pid: int, op: str, rundir: Path, **fields: Any) -> Tuple[float, Any]:
    """Client wall time of one request; ``inf`` when it got no answer within OP_TIMEOUT
    (counted as such in the median: a request that never answers is the worst case)."""
    t0 = time.perf_counter()
    try:
        out = client.call(pid, op, OP_TIMEOUT, runtime_dir=str(rundir), **fields)
    except SutureError as exc:
        print(f"pid {pid} {op}: {exc.code} after {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        return float("inf"), None
    return time.perf_counter() - t0, out


def _finite(x: float) -> Any:
    return None if x == float("inf") else x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=SRC: a runtime source tree to measure (repeatable)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="suture-busy-") as tmp:
        root = Path(tmp)
        rundir = root / "run"
        rundir.mkdir(mode=0o700)
        for label, body in (("v1", "return n < 10"), ("v2", "return 0 <= n < 10")):
            (root / label).mkdir()
            (root / label / "busydemo.py").write_text(f"def check(n):\n    {body}\n",
                                                      encoding="utf-8")
        patch = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")),
                            verify_state=False).data
        encoded = base64.b64encode(patch).decode("ascii")
        patch_id = load(patch).id

        variants: List[Tuple[str, str, int]] = []
        for spec in args.variant:
            name, _, src = spec.partition("=")
            variants.append((name, src, args.threads))
        if not variants:
            variants = [("busy", str(SRC), args.threads), ("idle", str(SRC), 0)]

        procs = {name: _target(name, src, threads, root, root / "v1", rundir)
                 for name, src, threads in variants}
        rows: Dict[str, Dict[str, List[float]]] = {
            name: {"hello": [], "status": [], "apply": [], "revert": [], "pause_ms": []}
            for name in procs}
        try:
            for p in procs.values():
                p.send_signal(signal.SIGSTOP)
            for r in range(args.rounds):
                for name, proc in procs.items():
                    proc.send_signal(signal.SIGCONT)
                    time.sleep(0.5)   # its threads are back on the CPU
                    for op in ("hello", "status"):
                        t, _ = _timed(proc.pid, op, rundir)
                        rows[name][op].append(t)
                    t, res = _timed(proc.pid, "apply", rundir, patch=encoded)
                    rows[name]["apply"].append(t)
                    if res is not None:
                        rows[name]["pause_ms"].append(res.get("pause_ns", 0) / 1e6)
                    # revert by id even when the apply's answer was lost: it may have landed
                    t, _ = _timed(proc.pid, "revert", rundir, patch_id=patch_id)
                    rows[name]["revert"].append(t)
                    proc.send_signal(signal.SIGSTOP)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()

    out: Dict[str, Any] = {
        "python": platform.python_version(), "threads": args.threads, "rounds": args.rounds,
        "cpus": os.cpu_count(), "load_before": os.getloadavg()[0],
        "variants": {name: {"src": src, "threads": threads} for name, src, threads in variants},
        "median": {name: {op: _finite(statistics.median(v)) if v else None
                          for op, v in ops.items()} for name, ops in rows.items()},
        "timeouts": {name: {op: sum(1 for x in v if x == float("inf")) for op, v in ops.items()}
                     for name, ops in rows.items()},
        "rounds_raw": {name: {op: [x if x != float("inf") else None for x in v]
                              for op, v in ops.items()} for name, ops in rows.items()},
    }
    print(f"Python {out['python']}, {args.threads} busy threads, {args.rounds} rounds, medians:")
    print(f"{'variant':<10} {'hello':>9} {'status':>9} {'apply':>9} {'revert':>9} {'pause':>9}")
    for name, m in out["median"].items():
        cells = [f"{m[op] * 1e3:>7.0f}ms" if m[op] is not None else f"{'timeout':>9}"
                 for op in ("hello", "status", "apply", "revert")]
        print(f"{name:<10} {' '.join(cells)} {(m['pause_ms'] or 0):>7.3f}ms  "
              f"timeouts {out['timeouts'][name]}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
