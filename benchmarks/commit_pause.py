#!/usr/bin/env python3
"""How long does Suture stop the world? Commit pause vs. the physical floor.

For patches that change 1, 10, 100 and 1000 functions this script

1. writes a module with N functions in two versions (v1, v2) to a temp dir and
   builds the patch with the real builder
   (``suture.tooling.build.build_trees(materialize(v1), materialize(v2))``);
2. for every interpreter under test, starts a FRESH subprocess per N that
   imports v1 and then, R times: applies the patch, records ``Result.pause_ns``
   (the time inside the single C call of ``suture.runtime.engine.commit``; no other
   thread can run Python code during it), the apply wall time split into
   prepare / commit / post, and reverts (``revert`` pause and wall time);
3. in the same process measures the physical floor: N ``f.__code__ = c``
   assignments as a bare Python loop, and the same N assignments done the way
   ``_commit`` does them (``deque(chain.from_iterable([map(setattr, ...)]),
   maxlen=0)``);
   As an experiment it also measures the pause when every target is first set
   to the value it already holds (warm caches; not what Suture does);
4. runs a background thread that spins in pure Python and stamps
   ``perf_counter_ns`` on every iteration, checks that no iteration ran inside
   any commit's C call (the call lies inside one gap of the spinner), and
   reports that gap, the longest gap during the whole apply, and the same for
   plain Python work of equal length (the GIL hand-off baseline). The control
   is the bare Python loop, which the spinner can interleave with (10 us
   switch interval);
5. measures what the prepare step's heap walks cost (``gc.get_referrers`` of
   the module's dict and of the swapped functions, per module): apply for N=100
   with ~1M extra gc-tracked objects in the target vs. a small heap, the
   longest time the spinner was stopped during such an apply, and one
   ``gc.get_referrers(<lru_cache wrapper type>)`` walk as a possible
   replacement.

Usage (from the repository root)::

    export PYENV_VERSION=3.11.7:3.9.18:3.10.13:3.12.1:3.13.0
    PYTHONPATH=src python3 benchmarks/commit_pause.py            # markdown
    PYTHONPATH=src python3 benchmarks/commit_pause.py --json out.json
    PYTHONPATH=src python3 benchmarks/commit_pause.py --quick    # smoke run

The parent needs ``suture.tooling`` (only to build the patches); the
subprocesses import nothing but the standard library and ``suture.runtime``.
The timing hooks the worker installs are measurement only: a wrapper around
``_commit.run``/``_commit.undo`` (to split apply into prepare/commit/post) and
a stand-in for ``collections.deque`` seen by ``_commit``, installed only for
the spinner check: it adds two clock reads, done by C code inside the same
drain, before the first and after the last op.
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

import _provenance  # benchmarks/_provenance.py (this script's directory)

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
    import array
    import collections
    import gc
    import importlib
    import itertools
    import operator
    import threading
    import types

    import suture.runtime as runtime
    from suture.runtime.engine import commit as _commit

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

    def timed_run(*args: Any, **kw: Any) -> int:
        a = pc()
        try:
            return real_run(*args, **kw)
        finally:
            marks.append(("run", a, pc()))

    def timed_undo(*args: Any, **kw: Any) -> int:
        a = pc()
        try:
            return real_undo(*args, **kw)
        finally:
            marks.append(("undo", a, pc()))

    def stamped_deque(it: Any, maxlen: Any = None) -> Any:
        # The two stamps are taken by C code inside the drain itself, right
        # before the first and after the last op: no bytecode boundary (where
        # this thread could hand the GIL over) lies between them and the ops.
        st = array.array("q")

        def stamp() -> Any:
            return map(st.append, itertools.starmap(pc, [()]))

        d = real_deque(itertools.chain(stamp(), it, stamp()), maxlen)
        drains.append((st[0], st[1]))
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

    if not cfg.get("heap_only"):
        # Experiment (not what Suture does): right before the commit, run the same
        # setattr/setitem calls once with the value each target holds *now* (a
        # no-op on state), so the commit itself runs on warm caches. Shows how much
        # of the pause is cold caches after prepare rather than the ops themselves.
        def rehearsed_run(ops: Any, *args: Any, **kw: Any) -> int:
            same = [o for o in ops if getattr(o, "kind", "call") in ("attr", "item")]
            now = [o.current() for o in same]
            if all(v is not _commit.MISSING for v in now):
                setter = {"attr": setattr, "item": operator.setitem}
                real_deque(map(lambda o, v: setter[o.kind](o.obj, o.key, v), same, now),
                           maxlen=0)
            return timed_run(ops, *args, **kw)

        _commit.run = rehearsed_run
        try:
            rehearsed = [one_cycle() for _ in range(reps)]
        finally:
            _commit.run = timed_run
        out["pause_rehearsed"] = stats([c["pause"] for c in rehearsed])

    if cfg.get("heap_only"):
        # The heap walks prepare does (one C call each; other threads are stopped
        # for all of it): the module's functions are the referrers of its dict,
        # lru_cache wrappers the referrers of the swapped functions.
        out["get_referrers_dict"] = stats([_time(lambda: gc.get_referrers(mod.__dict__))
                                           for _ in range(5)])
        out["get_referrers_funcs"] = stats([_time(lambda: gc.get_referrers(*funcs))
                                            for _ in range(5)])
        out["gc_get_objects"] = stats([_time(gc.get_objects) for _ in range(5)])
        # Alternative: on 3.10+ the lru_cache wrapper type is a heap type, so every
        # wrapper is a referrer of the type: one walk whatever the number of functions.
        import functools

        lru_type = type(functools.lru_cache()(lambda: None))
        out["lru_type_is_heap_type"] = bool(lru_type.__flags__ & (1 << 9))
        out["get_referrers_lru_type"] = stats([_time(lambda: gc.get_referrers(lru_type))
                                               for _ in range(5)])
        # the longest time a pure-Python thread was stopped during an apply
        spinner = _Spinner(threading)
        spinner.start(None)
        windows = []
        try:
            for _ in range(cfg["spin_reps"]):
                time.sleep(0.005)
                a = pc()
                runtime.apply(patch)
                windows.append((a, pc()))
                runtime.revert(patch.id)
        finally:
            spinner.stop()
        out["spinner_apply"] = spinner.judge(windows)
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

    def heap_walk() -> None:
        # what prepare does shortly before the commit: a walk over the whole gc heap
        gc.get_referrers(mod.__dict__)

    floors: Dict[str, List[int]] = {"py_loop": [], "c_loop": [], "c_loop_cold": []}
    for _ in range(reps):
        for name, fn in (("py_loop", py_loop), ("c_loop", c_loop)):
            floors[name].append(fn(new_codes))
            fn(old_codes)
        heap_walk()
        floors["c_loop_cold"].append(c_loop(new_codes))
        c_loop(old_codes)
    check(False)
    for name, values in floors.items():
        out[name] = stats(values)
    out["timer"] = stats([_timer_pair(pc) for _ in range(1000)])

    # -- other threads: a pure-Python spinner stamping the clock every iteration --
    out["spinner"] = {}
    _commit.collections = stamped  # type: ignore[attr-defined]
    try:
        for label, interval in (("default", None), ("10us", 1e-5)):
            out["spinner"][label] = _spin_test(cfg, runtime, patch, old_codes, new_codes,
                                               drains, py_loop, interval, check, threading)
    finally:
        _commit.collections = collections  # type: ignore[attr-defined]
    del junk
    return out


class _Spinner:
    """A pure-Python thread that stamps the clock on every iteration.

    A stop of the thread shows up as one long gap between two consecutive
    stamps; only gaps over ``threshold`` ns are kept. A window during which the
    thread never ran lies entirely inside one gap ("covered").
    """

    threshold = 300  # ns; one iteration takes ~0.1 us

    def __init__(self, threading: Any) -> None:
        import array

        self.threading = threading
        # flat (start, end, start, end, ...) in an array: not gc-tracked, so the
        # spinner does not grow the heap that prepare walks
        self.stamps = array.array("q")
        self.iters = 0
        self._stop = False

    def _spin(self) -> None:
        pc = time.perf_counter_ns
        add = self.stamps.append
        threshold = self.threshold
        last = pc()
        i = 0
        while not self._stop:
            now = pc()
            if now - last > threshold:
                add(last)
                add(now)
            last = now
            i += 1
        self.iters = i

    def start(self, interval: Optional[float]) -> None:
        self.old_interval = sys.getswitchinterval()
        self.interval = interval if interval is not None else self.old_interval
        sys.setswitchinterval(self.interval)
        self.t0 = time.perf_counter_ns()
        self.thread = self.threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        time.sleep(0.02)

    def stop(self) -> None:
        self._stop = True
        self.thread.join()
        self.elapsed = time.perf_counter_ns() - self.t0
        sys.setswitchinterval(self.old_interval)

    def judge(self, ws: List[Any]) -> Dict[str, Any]:
        import bisect

        st = self.stamps
        gaps = [(st[i], st[i + 1]) for i in range(0, len(st), 2)]
        ends = [b for _, b in gaps]
        covered, cover_len, worst = 0, [], []
        for s0, s1 in ws:
            over = []
            for a, b in gaps[bisect.bisect_right(ends, s0):]:
                if a >= s1:
                    break
                over.append((a, b))
            cover = [b - a for a, b in over if a <= s0 and b >= s1]
            if cover:
                covered += 1
                cover_len.append(cover[0])
            worst.append(max((b - a for a, b in over), default=0))
        return {"windows": len(ws), "window_ns": stats([b - a for a, b in ws]),
                "covered": covered, "covering_gap_ns": stats(cover_len),
                "max_overlapping_gap_ns": stats(worst)}


def _time(fn: Any) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def _timer_pair(pc: Any) -> int:
    a = pc()
    b = pc()
    return b - a


def _spin_test(cfg: Dict[str, Any], runtime: Any, patch: Any, old_codes: List[Any],
               new_codes: List[Any], drains: List[Any], py_loop: Any,
               interval: Optional[float], check: Any, threading: Any) -> Dict[str, Any]:
    """Which windows did a spinning pure-Python thread run in, and how long was it stopped?"""
    pc = time.perf_counter_ns

    def busy(ns: int) -> None:
        end = pc() + ns
        while pc() < end:
            pass

    spinner = _Spinner(threading)
    windows: Dict[str, List[Any]] = {"commit": [], "apply": [], "python_loop": [],
                                     "busy_python": []}
    spinner.start(interval)
    try:
        for _ in range(cfg["spin_reps"]):
            time.sleep(0.002)
            a = pc()
            runtime.apply(patch)
            b = pc()
            windows["commit"].append(drains[-1])
            windows["apply"].append((a, b))
            time.sleep(0.002)
            runtime.revert(patch.id)
            time.sleep(0.002)
            # control: the same N assignments as a bare Python loop
            a = pc()
            py_loop(new_codes)
            windows["python_loop"].append((a, pc()))
            py_loop(old_codes)
            time.sleep(0.002)
            # baseline: plain Python work (no Suture) as long as that apply
            a = pc()
            busy(windows["apply"][-1][1] - windows["apply"][-1][0])
            windows["busy_python"].append((a, pc()))
        check(False)
    finally:
        spinner.stop()
    return {"switchinterval_s": spinner.interval, "spinner_iterations": spinner.iters,
            "spinner_ns_per_iter_upper": spinner.elapsed / max(1, spinner.iters),
            "threshold_ns": spinner.threshold,
            **{k: spinner.judge(v) for k, v in windows.items()}}


# ----------------------------------------------------------------------------- parent

def build_patches(sizes: Sequence[int], work: Path) -> Dict[int, Dict[str, Any]]:
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

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


def snapshot_source(work: Path) -> Dict[str, Any]:
    """Copy src/suture once, so every worker of one run measures the same engine."""
    dest = work / "src"
    shutil.copytree(SRC / "suture", dest / "suture",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info: Dict[str, Any] = {"path": str(dest)}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(REPO),
                                        capture_output=True, text=True).stdout.strip()
        info["src_uncommitted"] = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=str(REPO),
            capture_output=True, text=True).stdout.split("\n")[:-1]
    except OSError:
        pass
    return info


def run_worker(python: str, cfg: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=cfg["src"], PYTHONDONTWRITEBYTECODE="1")
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
           f"warm-up; each floor: {reps} runs of N assignments in the same process)",
           "",
           "`pause` = `Result.pause_ns` (the single C call). Floors: `Python loop` = "
           "`for f, c in zip(funcs, codes): f.__code__ = c`; `C map` = the same N "
           "assignments the way `_commit` drains them, warm caches; `C map, cold` = the "
           "same right after one pass over the gc heap (as prepare does just before the "
           "commit). `pause after rehearsal` is an experiment, not Suture's behaviour: "
           "the same apply, but right before the commit every target is set once to the "
           "value it already holds (a no-op), so the commit runs on warm caches.",
           "",
           "| Python | N | ops | pause min | pause median | pause p95 | Python loop min / "
           "median | C map min / median | C map, cold min / median | revert pause median | "
           "pause after rehearsal min / median |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['python']} | {r['n']} | {r['ops']} | {us(r['pause']['min'])} | "
                   f"{us(r['pause']['median'])} | {us(r['pause']['p95'])} | "
                   f"{us(r['py_loop']['min'])} / {us(r['py_loop']['median'])} | "
                   f"{us(r['c_loop']['min'])} / {us(r['c_loop']['median'])} | "
                   f"{us(r['c_loop_cold']['min'])} / {us(r['c_loop_cold']['median'])} | "
                   f"{us(r['revert_pause']['median'])} | {us(r['pause_rehearsed']['min'])} / "
                   f"{us(r['pause_rehearsed']['median'])} |")
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
    out += ["", f"### A pure-Python thread spinning during {spin_reps} applies per row",
            "",
            "The spinner stamps `perf_counter_ns` on every iteration. `commit covered` = "
            "commits whose C call lay entirely inside one gap of the spinner (it did not run "
            "during the call); `stop around commit` = length of that gap (µs, median / max); "
            "`longest stop in apply` = the longest gap overlapping the whole `apply()` call "
            "(median / max); `same, plain Python` = the longest gap while the main thread ran a "
            "pure-Python busy loop of the same length (no Suture): the GIL hand-off baseline; "
            "`loop covered` = the control, N assignments as a bare Python loop.",
            "",
            "| Python | N | switch interval | commit covered | stop around commit | "
            "longest stop in apply | same, plain Python | loop covered |",
            "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for s in r["spinner"].values():
            c, a, b, p = s["commit"], s["apply"], s["busy_python"], s["python_loop"]
            out.append(
                f"| {r['python']} | {r['n']} | {s['switchinterval_s'] * 1e6:g} µs | "
                f"{c['covered']}/{c['windows']} | {us(c['covering_gap_ns']['median'], 0)} / "
                f"{us(c['covering_gap_ns']['max'], 0)} | "
                f"{us(a['max_overlapping_gap_ns']['median'], 0)} / "
                f"{us(a['max_overlapping_gap_ns']['max'], 0)} | "
                f"{us(b['max_overlapping_gap_ns']['median'], 0)} / "
                f"{us(b['max_overlapping_gap_ns']['max'], 0)} | "
                f"{p['covered']}/{p['windows']} |")
    if result.get("heap"):
        hr = result["config"]["heap_reps"]
        out += ["", f"### Heap scan: apply for N={result['config']['heap_n']} with a big heap "
                f"(ms; median of {hr} apply/revert cycles, min in brackets; scans: median of 5)",
                "",
                "`get_referrers(dict)` and `get_referrers(*funcs)` = the two heap walks "
                "prepare does per patched module (the module's functions are the referrers of "
                "its dict; `lru_cache` wrappers the referrers of the swapped functions); each is "
                "one C call, so other threads are stopped for all of it; `gc.get_objects()` for "
                "comparison; `get_referrers(lru type)` = a possible replacement for "
                "`get_referrers(*funcs)`: on 3.10+ every `lru_cache` wrapper is a referrer of "
                "its (heap) type, so one walk finds them all (on 3.9 the type is static and "
                "the walk finds nothing); `longest stop` = the longest gap of a spinning "
                "pure-Python thread during an apply (median / max over "
                f"{result['config']['spin_reps_heap']} applies, default switch interval).",
                "",
                "| Python | extra objects | gc objects | prepare | apply wall | pause (µs) | "
                "get_referrers(dict) | get_referrers(*funcs) | gc.get_objects() | "
                "get_referrers(lru type) | longest stop | gen-2 GCs |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["heap"]:
            g = r["spinner_apply"]["max_overlapping_gap_ns"]
            out.append(f"| {r['python']} | {r['heap_extra']:,} | {r['gc_objects']:,} | "
                       f"{ms(r['prepare']['median'])} ({ms(r['prepare']['min'])}) | "
                       f"{ms(r['apply_wall']['median'])} | {us(r['pause']['median'])} | "
                       f"{ms(r['get_referrers_dict']['median'])} | "
                       f"{ms(r['get_referrers_funcs']['median'])} | "
                       f"{ms(r['gc_get_objects']['median'])} | "
                       f"{ms(r['get_referrers_lru_type']['median'])}"
                       f"{'' if r['lru_type_is_heap_type'] else ' (finds nothing)'} | "
                       f"{ms(g['median'])} / {ms(g['max'])} | "
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
        load_start = os.getloadavg()
        source = snapshot_source(work)
        sys.path.insert(0, source["path"])  # the builder comes from the same snapshot
        heap_sizes = sorted(set(sizes) | ({args.heap_n} if args.heap else set()))
        patches = build_patches(heap_sizes, work)
        runs: List[Dict[str, Any]] = []
        heap_runs: List[Dict[str, Any]] = []
        for name, path in pythons.items():
            if path is None:
                continue
            for n in sizes:
                cfg = dict(patches[n], n=n, reps=args.reps, spin_reps=args.spin_reps,
                           src=source["path"])
                print(f"... {name} N={n}", file=sys.stderr)
                runs.append(run_worker(path, cfg, timeout=1800))
            if args.heap:
                for extra in (0, args.heap):
                    cfg = dict(patches[args.heap_n], n=args.heap_n, reps=args.heap_reps,
                               heap=extra, heap_only=True, spin_reps=args.spin_reps,
                               src=source["path"])
                    print(f"... {name} heap={extra}", file=sys.stderr)
                    heap_runs.append(run_worker(path, cfg, timeout=1800))
        result = {
            "config": {"sizes": sizes, "reps": args.reps, "spin_reps": args.spin_reps,
                       "spin_reps_heap": args.spin_reps,
                       "heap_n": args.heap_n, "heap_reps": args.heap_reps,
                       "heap_extra": args.heap},
            "suture": {k: v for k, v in source.items() if k != "path"},
            "loadavg": {"start": load_start, "end": os.getloadavg()},
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count()},
            "patches": {str(n): {"patch_bytes": p["patch_bytes"], "build_ms": p["build_ns"] / 1e6}
                        for n, p in patches.items()},
            "runs": runs, "heap": heap_runs, "missing": missing,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _provenance.emit(result, args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
