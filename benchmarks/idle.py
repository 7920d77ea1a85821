#!/usr/bin/env python3
"""What an idle agent costs a process: memory, modules, and CPU instructions.

For every interpreter (default: this Python; ``--versions 3.9,3.11`` picks
``.venvs/py3.X/bin/python`` of this checkout or of /work/main, or ``--pythons PATH,...``):

1. **Memory.** A program that prints ``ready`` and then waits, started four ways, in
   rounds with the variants interleaved:

   * ``bare``: without Suture;
   * ``agent``: the agent started as ``suture run`` starts it (``SUTURE_AGENT=1`` and the
     bootstrap directory first on ``PYTHONPATH``), with an empty state directory;
   * ``run``: under ``python -m suture run --`` itself (the command execs the program);
   * ``store``: as ``agent``, with a store file that holds no installed patch (audit rows
     only, as on a host where ``suture apply`` was used by hand): the agent must open it.

   Read from ``/proc/PID/status`` (VmRSS) and ``/proc/PID/smaps_rollup`` (Pss, and USS =
   Private_Clean + Private_Dirty) once the program is ready (the bootstrap waits for the
   agent's start-up work before the program runs) and 0.3 s later; the program reports
   its module count and whether the engine and sqlite3 are loaded. Every variant runs once
   before the rounds, so the bytecode caches are warm (``PYTHONDONTWRITEBYTECODE`` is
   removed from the targets' environment: without caches every import compiles its
   source, and the compiler's garbage stays in the heap).
2. **Instructions.** A fixed pure-Python workload (``N`` iterations of a loop that
   allocates, hashes and calls) under ``valgrind --tool=callgrind``, without and with the
   agent (started as above). callgrind dumps its counters when the workload starts and ends
   (``--dump-before=getppid``), so start-up is left out, and each variant runs with
   ``N1`` and ``N2`` iterations: ``(Ir(N2) - Ir(N1)) / (N2 - N1)`` is the cost of one
   iteration. The ratio is ``without / with`` (1.0: the idle agent costs nothing; target
   above 0.99). valgrind runs one thread at a time, so an agent thread that ran in the
   background would show here; the agent's thread sleeps in ``accept()``.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/idle.py --versions 3.9,3.10,3.11,3.12,3.13,3.14,3.15 \\
        --rounds 7 --json idle.json
    PYTHONPATH=src python3 benchmarks/idle.py --quick --json      # smoke: this Python

Prints a markdown table; ``--json FILE`` (``-``: stdout) writes the raw numbers, with the
commit, the dirty files and every interpreter's version.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import _provenance  # benchmarks/_provenance.py (this script's directory)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
VARIANTS = ("bare", "agent", "run", "store")

TARGET = r'''
import sys
print("ready", len(sys.modules), int("suture.runtime.engine" in sys.modules),
      int("sqlite3" in sys.modules), int("suture.runtime._agent" in sys.modules), flush=True)
sys.stdin.read()
'''

WORKLOAD = r'''
import gc, os, sys
def work(n):
    total = 0
    d = {}
    for i in range(n):
        s = str(i)
        d[s] = len(s) + hash(s) % 7
        total += d[s]
        if len(d) > 1000:
            d.clear()
    return total
n = int(sys.argv[1])
work(1000)                      # warm: specialisation, allocator
gc.collect()
gc.disable()
os.getppid()                    # callgrind dumps its counters here (--dump-before=getppid)
work(n)
os.getppid()                    # and here: the second dump holds the workload alone
print("agent" if "suture.runtime._agent" in sys.modules else "bare")
'''


def interpreters(versions: Sequence[str], pythons: Sequence[str]) -> List[Dict[str, str]]:
    out = []
    for v in versions:
        for base in (ROOT, Path("/work/main")):
            exe = base / ".venvs" / f"py{v}" / "bin" / "python"
            if exe.exists():
                out.append({"python": str(exe)})
                break
        else:
            found = shutil.which(f"python{v}")
            if found is None:
                raise SystemExit(f"no interpreter for Python {v}")
            out.append({"python": found})
    out += [{"python": p} for p in pythons]
    for row in out:
        row["version"] = subprocess.run(
            [row["python"], "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, check=True).stdout.strip()
    return out


def base_env(work: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUTURE_", "PYTHON"))}
    env.update(SUTURE_RUNTIME_DIR=str(work / "run"), SUTURE_STATE_DIR=str(work / "state"))
    return env


def bootstrap(python: str, env: Dict[str, str]) -> str:
    code = "from suture.runtime._bootstrap import prepare; print(prepare())"
    return subprocess.run([python, "-c", code], env=dict(env, PYTHONPATH=str(SRC)),
                          capture_output=True, text=True, check=True).stdout.strip()


def audit_only_store(python: str, env: Dict[str, str]) -> None:
    """A store file with an audit row and no installed patch."""
    code = ("from suture.runtime import store; store.audit('apply', 'x', 'refused SUT-E201', "
            "1, 1, 'benchmarks/idle.py'); assert store.installed() == []")
    subprocess.run([python, "-c", code], env=dict(env, PYTHONPATH=str(SRC)), check=True)


def memory(pid: int) -> Dict[str, int]:
    out: Dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    out["pss_kib"] = fields.get("Pss", 0)
    # Anonymous: heap, stacks, arenas. The rest of RSS is file pages (the interpreter's own
    # code, touched by the agent's code paths), which every process of that binary shares.
    out["anon_kib"] = fields.get("Anonymous", 0)
    out["uss_kib"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return out


def one(python: str, variant: str, work: Path, boot: str, settle: float) -> Dict[str, Any]:
    env = base_env(work)
    if variant == "store":
        env["SUTURE_STATE_DIR"] = str(work / "state-audit")
    argv = [python, "-c", TARGET]
    if variant in ("agent", "store"):
        env.update(PYTHONPATH=boot, SUTURE_AGENT="1")
    elif variant == "run":
        env["PYTHONPATH"] = str(SRC)
        argv = [python, "-m", "suture", "run", "--"] + argv
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(work))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"{variant}: {line} {proc.stderr.read() if proc.stderr else ''}")
        at_ready = memory(proc.pid)
        time.sleep(settle)
        row: Dict[str, Any] = dict(memory(proc.pid), modules=int(line[1]),
                                   engine=bool(int(line[2])), sqlite3=bool(int(line[3])),
                                   agent=bool(int(line[4])), rss_at_ready_kib=at_ready["rss_kib"])
    finally:
        proc.kill()
        proc.wait()
    if (variant != "bare") != row["agent"]:
        raise RuntimeError(f"{variant}: agent loaded: {row['agent']}")
    return row


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def measure_memory(python: str, work: Path, rounds: int, settle: float) -> Dict[str, Any]:
    env = base_env(work)
    boot = bootstrap(python, env)
    audit_only_store(python, dict(env, SUTURE_STATE_DIR=str(work / "state-audit")))
    for variant in VARIANTS:                       # warm the bytecode caches
        one(python, variant, work, boot, 0.0)
    raw: Dict[str, List[Dict[str, Any]]] = {v: [] for v in VARIANTS}
    for i in range(rounds):
        order = VARIANTS if i % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            raw[variant].append(one(python, variant, work, boot, settle))
    out: Dict[str, Any] = {"raw": raw}
    for variant in VARIANTS:
        rows = raw[variant]
        out[variant] = {"modules": rows[-1]["modules"], "engine": rows[-1]["engine"],
                        "sqlite3": rows[-1]["sqlite3"]}
        for key in ("rss_kib", "pss_kib", "uss_kib", "anon_kib"):
            out[variant][key] = spread([r[key] for r in rows])
        if variant != "bare":
            # Round by round (the same round's bare process): the delta, then its spread.
            for key in ("rss_kib", "pss_kib", "uss_kib", "anon_kib"):
                deltas = [r[key] - b[key] for r, b in zip(rows, raw["bare"])]
                out[variant][f"delta_{key}"] = spread(deltas)
    return out


def callgrind(python: str, with_agent: bool, n: int, work: Path, boot: str) -> int:
    out = work / f"cg.{os.getpid()}.{int(with_agent)}.{n}.out"
    env = dict(base_env(work), PYTHONHASHSEED="0")
    if with_agent:
        env.update(PYTHONPATH=boot, SUTURE_AGENT="1")
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           "--dump-before=getppid", python, "-c", WORKLOAD, str(n)],
                          capture_output=True, text=True, env=env, timeout=900, cwd=str(work))
    if proc.returncode != 0:
        raise RuntimeError(f"{python} agent={with_agent} n={n}: exit {proc.returncode}\n"
                           f"{proc.stderr[-3000:]}")
    if proc.stdout.split()[-1:] != ["agent" if with_agent else "bare"]:
        raise RuntimeError(f"agent={with_agent}: the workload said {proc.stdout!r}")
    dumps = sorted(work.glob(out.name + "*"))
    totals: Dict[str, int] = {}
    for d in dumps:
        found = re.search(r"^totals: (\d+)", d.read_text(), re.M)
        if found is None:
            raise RuntimeError(f"no totals in {d}")
        totals[d.name[len(out.name):]] = int(found.group(1))
        d.unlink()
    if ".2" not in totals:
        raise RuntimeError(f"expected 3 callgrind dumps, got {sorted(totals)}")
    return totals[".2"]


def measure_instructions(python: str, work: Path, rounds: int, n1: int,
                         n2: int) -> Dict[str, Any]:
    boot = bootstrap(python, base_env(work))
    per: Dict[str, List[float]] = {"without": [], "with": []}
    ratios: List[float] = []
    for i in range(rounds):
        got = {}
        for label in (("without", "with") if i % 2 == 0 else ("with", "without")):
            a = callgrind(python, label == "with", n1, work, boot)
            b = callgrind(python, label == "with", n2, work, boot)
            got[label] = (b - a) / (n2 - n1)
            per[label].append(got[label])
        ratios.append(got["without"] / got["with"])
    return {"n1": n1, "n2": n2, "ir_per_iteration": {k: spread(v) for k, v in per.items()},
            "ratio_without_over_with": spread(ratios), "raw_ratios": ratios}


def table(results: List[Dict[str, Any]]) -> str:
    lines = ["| Python | bare RSS | agent: +RSS | +anonymous | +USS | modules | `suture run`: +RSS "
             "| +USS | empty store file: +RSS | engine / sqlite3 loaded | Ir ratio without/with |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in results:
        m = r["memory"]

        def d(variant: str, key: str, m: Dict[str, Any] = m) -> str:
            s = m[variant][f"delta_{key}"]
            lo, hi = s["min"] / 1024, s["max"] / 1024
            return f"{s['median'] / 1024:.2f} MiB ({lo:.2f}-{hi:.2f})"
        ir = r.get("instructions")
        ratio = (f"{ir['ratio_without_over_with']['median']:.4f} "
                 f"({ir['ratio_without_over_with']['min']:.4f}-"
                 f"{ir['ratio_without_over_with']['max']:.4f})") if ir else "-"
        lines.append(
            f"| {r['version']} | {m['bare']['rss_kib']['median'] / 1024:.1f} MiB "
            f"| {d('agent', 'rss_kib')} | {d('agent', 'anon_kib')} | {d('agent', 'uss_kib')} "
            f"| {m['bare']['modules']} -> {m['agent']['modules']} "
            f"| {d('run', 'rss_kib')} | {d('run', 'uss_kib')} | {d('store', 'rss_kib')} "
            f"| {int(m['agent']['engine'])}/{int(m['agent']['sqlite3'])} "
            f"(store file: {int(m['store']['engine'])}/{int(m['store']['sqlite3'])}) "
            f"| {ratio} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--versions", default="", help="e.g. 3.9,3.11,3.13,3.15")
    ap.add_argument("--pythons", default="", help="interpreter paths, comma-separated")
    ap.add_argument("--rounds", type=int, default=7, help="memory rounds (>= 5 for results)")
    ap.add_argument("--ir-rounds", type=int, default=5, help="callgrind rounds")
    ap.add_argument("--n1", type=int, default=20_000)
    ap.add_argument("--n2", type=int, default=220_000)
    ap.add_argument("--settle", type=float, default=0.3, help="seconds after ready")
    ap.add_argument("--no-valgrind", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke: this Python, 1 round")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.ir_rounds, a.n1, a.n2, a.settle = 1, 1, 1_000, 3_000, 0.05
    pythons = interpreters([v for v in a.versions.split(",") if v],
                           [p for p in a.pythons.split(",") if p]) \
        if (a.versions or a.pythons) else interpreters([], [sys.executable])
    valgrind = shutil.which("valgrind") is not None and not a.no_valgrind
    state = _provenance.git_state(ROOT)    # before: what was measured, not what the tree became meanwhile
    results = []
    for row in pythons:
        with tempfile.TemporaryDirectory(prefix="suture-idle-") as d:
            work = Path(d)
            result = dict(row, memory=measure_memory(row["python"], work, a.rounds, a.settle))
            if valgrind:
                result["instructions"] = measure_instructions(row["python"], work, a.ir_rounds,
                                                              a.n1, a.n2)
        results.append(result)
        if a.json != "-":
            print(f"{row['version']} done", file=sys.stderr)
    doc = dict(state, nproc=os.cpu_count(), rounds=a.rounds, ir_rounds=a.ir_rounds,
               quick=a.quick, results=results)
    if a.json == "-":
        print(json.dumps(doc, indent=1))
        return 0
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
