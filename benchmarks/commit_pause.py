#!/usr/bin/env python3
"""How long does Suture stop the world? Commit pause vs. the physical floor.

For patches that change 1, 10, 100 and 1000 functions this script

1. writes a module with N functions in two versions (v1, v2) to a temp dir and
   builds the patch with the real builder
   (``suture.tooling.build.build_trees(materialize(v1), materialize(v2))``);
2. for every interpreter under test, starts a FRESH subprocess per N that
   imports v1 and then, R times: applies the patch, records ``Result.pause_ns``
   (the time inside the single C call of ``suture.runtime._commit``; no other
   thread can run Python code during it), the apply wall time split into
   prepare / commit / post, and reverts (``revert`` pause and wall time);
3. in the same process measures the physical floor: N ``f.__code__ = c``
   assignments as a bare Python loop, and the same N assignments done the way
   ``_commit`` does them (``deque(chain.from_iterable([map(setattr, ...)]),
   maxlen=0)``);
4. runs a background thread that spins in pure Python and stamps
   ``perf_counter_ns`` on every iteration, and finds the gap in its progress
   that covers each commit: the spinner was stopped for that long, and it never
   ran inside the C call. As a control, the same is done for the bare Python
   loop with a 10 us switch interval, where the spinner does get in;
5. measures what the prepare step's heap scan (one ``gc.get_objects()`` pass
   per module) costs: apply for N=100 with ~1M extra gc-tracked objects in the
   target vs. a small heap.

Usage (from the repository root)::

    export PYENV_VERSION=3.11.7:3.9.18:3.10.13:3.12.1:3.13.0
    PYTHONPATH=src python3 benchmarks/commit_pause.py            # markdown
    PYTHONPATH=src python3 benchmarks/commit_pause.py --json out.json
    PYTHONPATH=src python3 benchmarks/commit_pause.py --quick    # smoke run

The parent needs ``suture.tooling`` (only to build the patches); the
subprocesses import nothing but the standard library and ``suture.runtime``.
The timing hooks the worker installs are measurement only: a wrapper around
``_commit.run``/``_commit.undo`` (to split apply into prepare/commit/post) and
a stand-in for ``collections.deque`` seen by ``_commit`` (it stamps the clock
right before and right after the C call, for the spinner check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DEFAULT_PYTHONS = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13")
DEFAULT_SIZES = (1, 10, 100, 1000)


# ----------------------------------------------------------------------------- shared

def stats(values: Sequence[float]) -> Dict[str, float]:
    """min / median / p95 / max (nearest-rank p95), as floats."""
    v = sorted(values)
    if not v:
        return {"n": 0, "min": float("nan"), "median": float("nan"),
                "p95": float("nan"), "max": float("nan")}
    n = len(v)
    mid = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    rank = max(1, -(-95 * n // 100))  # ceil(0.95 n)
    return {"n": n, "min": float(v[0]), "median": float(mid), "p95": float(v[rank - 1]),
            "max": float(v[-1])}


def module_source(n: int, version: int) -> str:
    lines = [f'"""Benchmark module: {n} functions (the patch changes them all)."""', ""]
    for i in range(n):
        body = f"return x + {i}" if version == 1 else f"return (x + {i}) * 2"
        lines += ["", f"def f{i}(x):", f"    {body}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- worker
# Runs in the interpreter under test: standard library and suture.runtime only.

def worker(cfg: Dict[str, Any]) -> Dict[str, Any]:
    import collections
    import gc
    import importlib
    import itertools
    import threading
    import types

    import suture.runtime as runtime
    from suture.runtime import _commit

    pc = time.perf_counter_ns
    n = cfg["n"]
    reps = cfg["reps"]
    heap = cfg.get("heap", 0)
    out: Dict[str, Any] = {"python": sys.version.split()[0], "n": n, "reps": reps,
                           "heap_extra": heap, "switchinterval_s": sys.getswitchinterval()}

    junk = [[i] for i in range(heap)]  # gc-tracked (lists are never untracked)
    out["gc_objects"] = len(gc.get_objects())

    sys.path.insert(0, cfg["v1_root"])
    mod = importlib.import_module(cfg["module"])
    funcs = [getattr(mod, f"f{i}") for i in range(n)]
    old_codes = [f.__code__ for f in funcs]
    patch = runtime.load_patch(Path(cfg["patch"]).read_bytes())

    # -- measurement hooks (see module docstring) --
    marks: List[Any] = []          # (kind, t_before, t_after) around _commit.run / undo
    drains: List[Any] = []         # (t_before, t_after) right around the C call
    real_run, real_undo = _commit.run, _commit.undo
    real_deque = collections.deque

    def timed_run(ops: Any) -> int:
        a = pc()
        try:
            return real_run(ops)
        finally:
            marks.append(("run", a, pc()))

    def timed_undo(ops: Any) -> int:
        a = pc()
        try:
            return real_undo(ops)
        finally:
            marks.append(("undo", a, pc()))

    def stamped_deque(it: Any, maxlen: Any = None) -> Any:
        a = pc()
        d = real_deque(it, maxlen)
        b = pc()
        drains.append((a, b))
        return d

    _commit.run, _commit.undo = timed_run, timed_undo
    # The deque stand-in adds two clock reads inside the engine's own pause
    # measurement, so it is installed only for the spinner test (not for the
    # pause table).
    stamped = types.SimpleNamespace(deque=stamped_deque)

    def check(expect_v2: bool) -> None:
        got = funcs[-1](1)
        want = (1 + n - 1) * 2 if expect_v2 else 1 + n - 1
        if got != want:
            raise AssertionError(f"f{n - 1}(1) = {got}, expected {want} (v2={expect_v2})")

    def one_cycle() -> Dict[str, int]:
        gen2 = gc.get_stats()[2]["collections"]
        t0 = pc()
        res = runtime.apply(patch)
        t1 = pc()
        if res.state != "applied":
            raise AssertionError(f"apply: {res!r}")
        _, c0, c1 = marks[-1]
        check(True)
        t2 = pc()
        rv = runtime.revert(patch.id)
        t3 = pc()
        check(False)
        return {"pause": res.pause_ns, "apply_wall": t1 - t0, "prepare": c0 - t0,
                "commit_wall": c1 - c0, "post": t1 - c1, "revert_pause": rv.pause_ns,
                "revert_wall": t3 - t2, "ops": res.ops,
                "gen2_collections": gc.get_stats()[2]["collections"] - gen2}

    first = one_cycle()             # warm-up, reported on its own
    out["first_cycle"] = first
    out["ops"] = first["ops"]
    cycles = [one_cycle() for _ in range(reps)]
    for key in ("pause", "apply_wall", "prepare", "commit_wall", "post", "revert_pause",
                "revert_wall"):
        out[key] = stats([c[key] for c in cycles])
    out["gen2_collections_during_cycles"] = sum(c["gen2_collections"] for c in cycles)

    if heap or cfg.get("heap_only"):
        out["gc_get_objects"] = stats([_time(gc.get_objects) for _ in range(5)])
        del junk
        return out

    # -- physical floor: N assignments, same process --
    runtime.apply(patch)
    new_codes = [f.__code__ for f in funcs]
    runtime.revert(patch.id)
    check(False)

    def py_loop(codes: List[Any]) -> int:
        t0 = pc()
        for f, c in zip(funcs, codes):
            f.__code__ = c
        return pc() - t0

    keys = ["__code__"] * n

    def c_loop(codes: List[Any]) -> int:
        chain = itertools.chain.from_iterable([map(setattr, funcs, keys, codes)])
        drain = real_deque
        t0 = pc()
        drain(chain, maxlen=0)
        return pc() - t0

    floors: Dict[str, List[int]] = {"py_loop": [], "c_loop": []}
    for _ in range(reps):
        for name, fn in (("py_loop", py_loop), ("c_loop", c_loop)):
            floors[name].append(fn(new_codes))
            fn(old_codes)
    check(False)
    out["py_loop"] = stats(floors["py_loop"])
    out["c_loop"] = stats(floors["c_loop"])
    out["timer"] = stats([_timer_pair(pc) for _ in range(1000)])

    # -- other threads: a pure-Python spinner stamping the clock every iteration --
    out["spinner"] = {}
    _commit.collections = stamped  # type: ignore[attr-defined]
    try:
        for label, interval in (("default", None), ("10us", 1e-5)):
            out["spinner"][label] = _spin_test(cfg, runtime, patch, funcs, old_codes,
                                               new_codes, drains, py_loop, interval, check,
                                               threading)
    finally:
        _commit.collections = collections  # type: ignore[attr-defined]
    del junk
    return out


def _time(fn: Any) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def _timer_pair(pc: Any) -> int:
    a = pc()
    b = pc()
    return b - a


def _spin_test(cfg: Dict[str, Any], runtime: Any, patch: Any, funcs: List[Any],
               old_codes: List[Any], new_codes: List[Any], drains: List[Any], py_loop: Any,
               interval: Optional[float], check: Any, threading: Any) -> Dict[str, Any]:
    pc = time.perf_counter_ns
    gaps: List[Any] = []
    state = {"stop": False, "iters": 0}
    threshold = 500  # ns; a normal iteration takes ~0.1 us

    def spin() -> None:
        g = gaps
        last = pc()
        i = 0
        while not state["stop"]:
            now = pc()
            if now - last > threshold:
                g.append((last, now))
            last = now
            i += 1
        state["iters"] = i

    old_interval = sys.getswitchinterval()
    if interval is not None:
        sys.setswitchinterval(interval)
    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        time.sleep(0.02)
        commits: List[Any] = []
        loops: List[Any] = []
        for _ in range(cfg["spin_reps"]):
            time.sleep(0.002)
            res = runtime.apply(patch)
            commits.append((drains[-1][0], drains[-1][1], res.pause_ns))
            time.sleep(0.002)
            runtime.revert(patch.id)
            time.sleep(0.002)
            # control: the same N assignments as a bare Python loop
            a = pc()
            py_loop(new_codes)
            b = pc()
            loops.append((a, b, b - a))
            py_loop(old_codes)
        check(False)
    finally:
        state["stop"] = True
        t.join()
        sys.setswitchinterval(old_interval)

    def judge(windows: List[Any]) -> Dict[str, Any]:
        covered, stopped, inside, worst = 0, [], 0, []
        for s0, s1, _ in windows:
            over = [(a, b) for a, b in gaps if b > s0 and a < s1]
            cover = [(a, b) for a, b in over if a <= s0 and b >= s1]
            if cover:
                covered += 1
                stopped.append(cover[0][1] - cover[0][0])
            # spinner ticks strictly inside the window (it ran during it)
            inside += sum(1 for a, b in over if s0 < b < s1 or s0 < a < s1)
            worst.append(max((b - a for a, b in over), default=0))
        return {"windows": len(windows), "window_ns": stats([w[2] for w in windows]),
                "covered_by_one_gap": covered, "spinner_ticks_inside": inside,
                "covering_gap_ns": stats(stopped), "max_overlapping_gap_ns": stats(worst)}

    return {"switchinterval_s": interval if interval is not None else old_interval,
            "spinner_iterations": state["iters"], "commit": judge(commits),
            "python_loop": judge(loops)}


# ----------------------------------------------------------------------------- parent

def build_patches(sizes: Sequence[int], work: Path) -> Dict[int, Dict[str, Any]]:
    from suture.tooling.build import build_trees
    from suture.tooling.sources import materialize

    out: Dict[int, Dict[str, Any]] = {}
    for n in sizes:
        name = f"suture_bench_n{n}"
        for v in (1, 2):
            root = work / f"n{n}" / f"v{v}"
            root.mkdir(parents=True)
            (root / f"{name}.py").write_text(module_source(n, v), encoding="utf-8")
        t0 = time.perf_counter_ns()
        report = build_trees(materialize(str(work / f"n{n}" / "v1")),
                             materialize(str(work / f"n{n}" / "v2")))
        build_ns = time.perf_counter_ns() - t0
        assert report.data is not None
        patch = work / f"n{n}" / "patch.suture"
        patch.write_bytes(report.data)
        changes = report.changes()
        assert len(changes) == n and all(c["verdict"] == "live" for c in changes), changes[:3]
        out[n] = {"module": name, "v1_root": str(work / f"n{n}" / "v1"), "patch": str(patch),
                  "patch_bytes": len(report.data), "build_ns": build_ns}
    return out


def run_worker(python: str, cfg: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} worker failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def find_pythons(names: Sequence[str]) -> Dict[str, Optional[str]]:
    found: Dict[str, Optional[str]] = {}
    for name in names:
        path = shutil.which(name)
        ok = False
        if path:
            probe = subprocess.run([path, "-c", "import sys; print(sys.version)"],
                                   capture_output=True, text=True)
            ok = probe.returncode == 0
        found[name] = path if ok else None
    return found


def us(ns: float, digits: int = 1) -> str:
    if ns != ns:  # nan
        return "-"
    return f"{ns / 1000:.{digits}f}"


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def markdown(result: Dict[str, Any]) -> str:
    rows = result["runs"]
    reps = result["config"]["reps"]
    out = [f"### Commit pause vs. floor (µs; {reps} apply/revert cycles per row after one "
           "warm-up; floors: same process, same N, {reps} runs)".replace("{reps}", str(reps)),
           "",
           "| Python | N | ops | pause min | pause median | pause p95 | Python loop min | "
           "Python loop median | C-level map min | C-level map median | revert pause median |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['python']} | {r['n']} | {r['ops']} | {us(r['pause']['min'])} | "
                   f"{us(r['pause']['median'])} | {us(r['pause']['p95'])} | "
                   f"{us(r['py_loop']['min'])} | {us(r['py_loop']['median'])} | "
                   f"{us(r['c_loop']['min'])} | {us(r['c_loop']['median'])} | "
                   f"{us(r['revert_pause']['median'])} |")
    out += ["", f"### Apply and revert wall time (ms, median of {reps}; first = warm-up cycle)",
            "",
            "| Python | N | apply wall | prepare | commit (run) | post | first apply | "
            "revert wall |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['python']} | {r['n']} | {ms(r['apply_wall']['median'])} | "
                   f"{ms(r['prepare']['median'])} | {ms(r['commit_wall']['median'])} | "
                   f"{ms(r['post']['median'])} | {ms(r['first_cycle']['apply_wall'])} | "
                   f"{ms(r['revert_wall']['median'])} |")
    spin_reps = result["config"]["spin_reps"]
    out += ["", f"### A pure-Python thread spinning during {spin_reps} commits per row",
            "",
            "`covered` = commits whose C call lay entirely inside one gap of the spinner; "
            "`ticks inside` = spinner iterations that ran inside a commit (or, for the control, "
            "inside the bare Python loop); `gap` = length of that covering gap (µs, median / "
            "max): how long the spinner was stopped around the commit.",
            "",
            "| Python | N | switch interval | commit covered | commit ticks inside | "
            "gap median | gap max | Python loop ticks inside | Python loop covered |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for label, s in r["spinner"].items():
            c, p = s["commit"], s["python_loop"]
            out.append(f"| {r['python']} | {r['n']} | {s['switchinterval_s'] * 1e6:g} µs | "
                       f"{c['covered_by_one_gap']}/{c['windows']} | {c['spinner_ticks_inside']} "
                       f"| {us(c['covering_gap_ns']['median'])} | "
                       f"{us(c['covering_gap_ns']['max'])} | {p['spinner_ticks_inside']} | "
                       f"{p['covered_by_one_gap']}/{p['windows']} |")
    if result.get("heap"):
        hr = result["config"]["heap_reps"]
        out += ["", f"### Heap scan: apply for N={result['config']['heap_n']} with a big heap "
                f"(ms, median of {hr}; min in brackets)",
                "",
                "| Python | extra objects | gc objects | prepare | apply wall | pause (µs) | "
                "one gc.get_objects() | gen-2 collections |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["heap"]:
            out.append(f"| {r['python']} | {r['heap_extra']:,} | {r['gc_objects']:,} | "
                       f"{ms(r['prepare']['median'])} ({ms(r['prepare']['min'])}) | "
                       f"{ms(r['apply_wall']['median'])} | {us(r['pause']['median'])} | "
                       f"{ms(r['gc_get_objects']['median'])} | "
                       f"{r['gen2_collections_during_cycles']} |")
    if result.get("missing"):
        out += ["", "Not found (skipped): " + ", ".join(result["missing"])]
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--pythons", default=",".join(DEFAULT_PYTHONS),
                    help="comma-separated interpreters (names on PATH or paths)")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--reps", type=int, default=30, help="apply/revert cycles per row")
    ap.add_argument("--spin-reps", type=int, default=10, help="commits watched by the spinner")
    ap.add_argument("--heap", type=int, default=1_000_000,
                    help="extra gc-tracked objects for the heap-scan test (0: skip it)")
    ap.add_argument("--heap-n", type=int, default=100)
    ap.add_argument("--heap-reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: this interpreter only, N=1,10, 3 reps, small heap")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="write JSON to FILE (or stdout with no FILE, instead of markdown)")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.pythons, args.sizes, args.reps, args.spin_reps = sys.executable, "1,10", 3, 2
        args.heap, args.heap_n, args.heap_reps = 10_000, 10, 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pythons = find_pythons([p for p in args.pythons.split(",") if p])
    missing = [p for p, path in pythons.items() if path is None]
    for p in missing:
        print(f"warning: {p} not found or not runnable; skipped (on this machine: export "
              "PYENV_VERSION=3.11.7:3.9.18:3.10.13:3.12.1:3.13.0)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="suture-bench-"))
    try:
        heap_sizes = sorted(set(sizes) | ({args.heap_n} if args.heap else set()))
        patches = build_patches(heap_sizes, work)
        runs: List[Dict[str, Any]] = []
        heap_runs: List[Dict[str, Any]] = []
        for name, path in pythons.items():
            if path is None:
                continue
            for n in sizes:
                cfg = dict(patches[n], n=n, reps=args.reps, spin_reps=args.spin_reps)
                print(f"... {name} N={n}", file=sys.stderr)
                runs.append(run_worker(path, cfg, timeout=1800))
            if args.heap:
                for extra in (0, args.heap):
                    cfg = dict(patches[args.heap_n], n=args.heap_n, reps=args.heap_reps,
                               heap=extra, heap_only=True, spin_reps=0)
                    print(f"... {name} heap={extra}", file=sys.stderr)
                    heap_runs.append(run_worker(path, cfg, timeout=1800))
        result = {
            "config": {"sizes": sizes, "reps": args.reps, "spin_reps": args.spin_reps,
                       "heap_n": args.heap_n, "heap_reps": args.heap_reps,
                       "heap_extra": args.heap},
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count()},
            "patches": {str(n): {"patch_bytes": p["patch_bytes"], "build_ms": p["build_ns"] / 1e6}
                        for n, p in patches.items()},
            "runs": runs, "heap": heap_runs, "missing": missing,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        text = json.dumps(result, indent=1)
        if args.json == "-":
            print(text)
            return 0
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
