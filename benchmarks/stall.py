#!/usr/bin/env python3
"""The application's stall during an apply and a revert, as the application feels it.

The commit is one C call (microseconds, ``benchmarks/commit_pause.py``); what an
application feels is every stretch during which its threads could not run Python code
while an apply or a revert was under way: long C calls that hold the GIL (heap walks,
``compile``, garbage collections the engine's allocations trigger), plus the GIL hand-off
itself. This script measures that, for a generated patch that changes N functions
(default 100), in a fresh target process per round:

* ``spinner``: a pure-Python thread spins and stamps ``perf_counter_ns`` on every
  iteration; the longest gap between two stamps that overlaps the apply (or revert) is
  the longest time the application could not run.
* ``asyncio``: an event loop (the process's main thread) runs a timer with a 1 ms period
  and records how late each tick fires; the largest lateness of a tick due during the
  apply (or revert) is what an asyncio server feels.

The two are measured in separate processes (a spinning thread would itself delay the
event loop by up to the switch interval). The patch is applied the way the agent does it:
on a thread of its own, with ``suture.runtime.apply`` (the agent's socket and decoding are
left out). Each process applies and reverts ``--cycles`` times; the first apply loads the
engine (``cold``) and is reported apart. A control window of the same length with no apply
(``idle``) shows the floor of each measurement (the GIL hand-off).

Rounds are fresh processes, with every (python, heap, variant, scenario) interleaved in
each round. ``--src label=PATH`` (repeatable) compares engines, e.g. the code before and
after a change (``git worktree add /tmp/old <commit>`` then ``--src old=/tmp/old/src``).

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/stall.py --pythons /path/py3.9,/path/py3.11 \\
        --heaps 50000,500000 --rounds 7 --json out.json
    PYTHONPATH=src python benchmarks/stall.py --quick --json        # smoke run
    PYTHONPATH=src python benchmarks/stall.py --trace --rounds 1    # long C calls, by name

``--trace`` additionally records, in the applying thread, every C call that held on for
more than 0.2 ms (``sys.setprofile``; it slows the Python side, so its apply times are not
comparable) and every garbage collection over 0.2 ms; ``--profile`` adds a cProfile of one
warm apply (own time). The parent needs ``suture.tooling`` to build the patch; the targets
import only the standard library and ``suture.runtime``.
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


# ----------------------------------------------------------------------------- shared

def stats(values: Sequence[float]) -> Dict[str, float]:
    """n / min / median / p99 (nearest rank) / max."""
    v = sorted(values)
    if not v:
        return {"n": 0, "min": float("nan"), "median": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    n = len(v)
    mid = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    rank = max(1, -(-99 * n // 100))  # ceil(0.99 n)
    return {"n": n, "min": float(v[0]), "median": float(mid), "p99": float(v[rank - 1]),
            "max": float(v[-1])}


def module_source(n: int, version: int) -> str:
    """N functions; v2 changes every body. A few closures and an lru_cache wrapper too, so
    the engine's reference search has something to find."""
    lines = [f'"""Benchmark module: {n} functions (the patch changes them all)."""',
             "import functools", ""]
    for i in range(n):
        body = f"return x + {i}" if version == 1 else f"return (x + {i}) * 2"
        lines += ["", f"def f{i}(x):", f"    {body}", ""]
    lines += ["", "def make(k):", "    def inner(x):",
              "        return f0(x) + k" if version == 1 else "        return f0(x) + k + 1",
              "    return inner", "", "", "CLOSURES = [make(k) for k in range(10)]", "",
              "", "@functools.lru_cache(maxsize=None)", "def cached(x):", "    return f1(x)", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- target
# Runs in the interpreter under test: standard library and suture.runtime only.

def _make_heap(extra: int) -> List[Any]:
    """``extra`` gc-tracked objects shaped like an application's: instances with a
    __dict__, lists, dicts, tuples of objects, and closures."""

    class Row:
        def __init__(self, i: int) -> None:
            self.i = i
            self.tags = [i]

    def closure(i: int) -> Any:
        return lambda: i

    heap: List[Any] = []
    kinds = (lambda i: Row(i), lambda i: [i, str(i)], lambda i: {"k": i},
             lambda i: (i, [i]), closure)
    for i in range(extra // 2):  # a Row is two objects (itself and its list) and so on
        heap.append(kinds[i % len(kinds)](i))
    return heap


class _Gaps:
    """Longest stretch overlapping a window, from a flat array of (start, end, CPU at
    start, CPU at end) of stretches during which the watcher did not run (gaps for the
    spinner, [due, fired] for the timer).

    ``worst`` is wall time. ``worst_cpu`` is the process's CPU time during the stretch
    (capped at its length): what the applying thread burned while the watcher waited for
    the GIL. On a quiet machine the two agree; on a loaded one, wall time also counts the
    time the OS ran other processes, and ``worst_cpu`` is the stall the engine caused."""

    def __init__(self, flat: Any) -> None:
        self.rows = [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]

    def worst(self, s0: int, s1: int) -> int:
        return max((b - a for a, b, _, _ in self.rows if b >= s0 and a <= s1), default=0)

    def worst_cpu(self, s0: int, s1: int) -> int:
        return max((min(b - a, cb - ca) for a, b, ca, cb in self.rows if b >= s0 and a <= s1),
                   default=0)


def target(cfg: Dict[str, Any]) -> Dict[str, Any]:
    import array
    import asyncio
    import gc
    import importlib
    import threading

    pc = time.perf_counter_ns
    cpu = time.thread_time_ns   # --trace: CPU time of the applying thread, not its GIL waits
    proc = time.process_time_ns  # CPU the process burned during a gap (see _Gaps)
    out: Dict[str, Any] = {"python": sys.version.split()[0]}
    heap = _make_heap(cfg["heap"])
    out["gc_objects"] = len(gc.get_objects())
    sys.path.insert(0, cfg["v1_root"])
    mod = importlib.import_module(cfg["module"])
    data = Path(cfg["patch"]).read_bytes()
    import suture.runtime as runtime   # the agent loads this much at start; the engine on use

    out["suture"] = os.path.dirname(runtime.__file__)
    stamps = array.array("q")   # not gc-tracked: watching does not grow the heap
    threshold = 50_000          # ns: stretches shorter than this are not kept
    windows: List[Dict[str, Any]] = []
    trace: List[Any] = []

    def tracer() -> Any:
        open_calls: List[Any] = []

        def prof(frame: Any, event: str, arg: Any) -> None:
            if event == "c_call":
                open_calls.append([cpu(), False])
            elif event == "call" and open_calls:
                open_calls[-1][1] = True   # runs Python inside: it lets other threads in
            elif event in ("c_return", "c_exception") and open_calls:
                t0, nested = open_calls.pop()
                if nested and open_calls:
                    open_calls[-1][1] = True
                took = cpu() - t0
                if took > 200_000 and not nested:
                    name = getattr(arg, "__qualname__", None) or repr(arg)
                    mod_ = getattr(arg, "__module__", None) or ""
                    where = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
                    trace.append(("call", f"{mod_}.{name}".lstrip("."), where, took, doing[0]))
        return prof

    gc_open: Dict[str, int] = {}
    doing = ["-"]   # the operation under way, for --trace

    def on_gc(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            gc_open["t"] = cpu()
        elif "t" in gc_open:
            took = cpu() - gc_open.pop("t")
            if took > 200_000:
                trace.append(("gc", f"generation {info.get('generation')}",
                              threading.current_thread().name, took, doing[0]))

    if cfg.get("trace"):
        gc.callbacks.append(on_gc)

    def agent() -> None:
        """Apply and revert, as the agent's thread would, timing each."""
        patch_id = None
        if cfg.get("trace"):
            sys.setprofile(tracer())
        try:
            time.sleep(0.02)
            for i in range(cfg["cycles"]):
                for kind in ("apply", "revert"):
                    doing[0] = kind
                    t0 = pc()
                    if kind == "apply":
                        res = runtime.apply(data)
                        patch_id = res.patch_id
                        ok = res.state == "applied" and mod.f1(1) == 4
                    else:
                        runtime.revert(patch_id)
                        ok = mod.f1(1) == 2
                    t1 = pc()
                    doing[0] = f"after {kind}"
                    if not ok:
                        raise AssertionError(f"{kind} did not take effect")
                    windows.append({"kind": kind, "cycle": i, "t0": t0, "t1": t1})
                    # what the operation leaves behind (a collection its garbage triggers)
                    time.sleep(0.02)
                    windows.append({"kind": f"after {kind}", "cycle": i, "t0": t1, "t1": pc()})
                t0 = pc()   # control: as long as the last apply, with no work at all
                time.sleep((windows[-4]["t1"] - windows[-4]["t0"]) / 1e9)
                windows.append({"kind": "idle", "cycle": i, "t0": t0, "t1": pc()})
                time.sleep(0.02)
            if cfg.get("profile"):
                import cProfile
                import io
                import pstats
                time.sleep(0.02)
                pr = cProfile.Profile()
                pr.enable()
                res = runtime.apply(data)
                pr.disable()
                runtime.revert(res.patch_id)
                s = io.StringIO()
                pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
                out["profile"] = s.getvalue().splitlines()
        except BaseException as exc:  # noqa: BLE001 - reported to the driver, which stops
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            sys.setprofile(None)
            done.set()

    done = threading.Event()
    if cfg["scenario"] == "spinner":
        def spin() -> None:
            add = stamps.append
            last, last_cpu = pc(), proc()
            while not done.is_set():
                now, now_cpu = pc(), proc()
                if now - last > threshold:
                    add(last)
                    add(now)
                    add(last_cpu)
                    add(now_cpu)
                last, last_cpu = now, now_cpu

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        time.sleep(0.05)
        worker = threading.Thread(target=agent, name="agent")
        worker.start()
        worker.join()
        spinner.join()
    else:
        period = 1_000_000   # ns

        async def ticks() -> None:
            while not done.is_set():
                due, due_cpu = pc() + period, proc()
                await asyncio.sleep(period / 1e9)
                now, now_cpu = pc(), proc()
                if now - due > threshold:
                    stamps.extend((due, now, due_cpu, now_cpu))

        async def main() -> None:
            task = asyncio.ensure_future(ticks())
            await asyncio.sleep(0.05)
            worker = threading.Thread(target=agent, name="agent")
            worker.start()
            while worker.is_alive():
                await asyncio.sleep(0.01)
            await task

        asyncio.run(main())
    gaps = _Gaps(stamps)
    out["windows"] = [{"kind": w["kind"], "cycle": w["cycle"], "wall_ns": w["t1"] - w["t0"],
                       "stall_ns": gaps.worst(w["t0"], w["t1"]),
                       "stall_cpu_ns": gaps.worst_cpu(w["t0"], w["t1"])} for w in windows]
    out["trace"] = trace
    del heap
    return out


# ----------------------------------------------------------------------------- parent

def build_patch(n: int, work: Path) -> Dict[str, Any]:
    from suture.runtime import patchfile
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

    name = f"suture_stall_n{n}"
    for v in (1, 2):
        root = work / f"v{v}"
        root.mkdir(parents=True)
        (root / f"{name}.py").write_text(module_source(n, v), encoding="utf-8")
    report = build_trees(materialize(str(work / "v1")), materialize(str(work / "v2")))
    assert report.data is not None, report
    # The plain payload: an engine from before the deflated one (--src old=...) reads it too.
    data = patchfile.dump(patchfile.load(report.data), compress=False)
    (work / "patch.suture").write_bytes(data)
    return {"module": name, "v1_root": str(work / "v1"), "patch": str(work / "patch.suture"),
            "patch_bytes": len(data)}


def snapshot(label: str, src: Any, work: Path) -> Dict[str, Any]:
    """Copy ``src/suture`` once, so every round measures the same engine."""
    src = Path(src)
    dest = work / f"src-{label}"
    shutil.copytree(src / "suture", dest / "suture",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"label": label, "path": str(dest), "from": str(src), **_provenance.git_state(src)}


def run_target(python: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=cfg["src"])   # bytecode cached, as installed
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--target", json.dumps(cfg)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} target failed (exit {proc.returncode}):\n{proc.stderr}")
    got: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in got:   # an engine that could not apply or revert measures nothing
        raise RuntimeError(f"{python} target ({cfg.get('label', '')}): {got['error']}")
    return got


def summarize(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (python, heap, variant, scenario, kind): stall and wall over rounds.
    Per round, the longest stall of the warm cycles (cycle >= 1) is that round's value;
    the cold first apply is a row of its own."""
    rows: Dict[Any, Dict[str, Any]] = {}
    for r in runs:
        per: Dict[str, List[Dict[str, Any]]] = {}
        for w in r["windows"]:
            kind = w["kind"] if w["cycle"] else f"{w['kind']} (cold)"
            per.setdefault(kind, []).append(w)
        for kind, ws in per.items():
            key = (r["python"], r["heap"], r["variant"], r["scenario"], kind)
            row = rows.setdefault(key, {"python": r["python"], "heap": r["heap"],
                                        "gc_objects": r["gc_objects"], "variant": r["variant"],
                                        "scenario": r["scenario"], "kind": kind,
                                        "stall_ns": [], "stall_cpu_ns": [], "wall_ns": []})
            row["stall_ns"].append(max(w["stall_ns"] for w in ws))
            row["stall_cpu_ns"].append(max(w["stall_cpu_ns"] for w in ws))
            row["wall_ns"].extend(w["wall_ns"] for w in ws)
    out = []
    for row in rows.values():
        row["stall"] = stats(row.pop("stall_ns"))
        row["stall_cpu"] = stats(row.pop("stall_cpu_ns"))
        row["wall"] = stats(row.pop("wall_ns"))
        out.append(row)
    return out


def markdown(result: Dict[str, Any]) -> str:
    def ms(v: float) -> str:
        return "-" if v != v else f"{v / 1e6:.2f}"

    cfg = result["config"]
    lines = [f"### Application stall during apply/revert of a {cfg['n']}-function patch "
             f"(ms; {cfg['rounds']} rounds, fresh process each, {cfg['cycles'] - 1} warm "
             "cycles per round)", "",
             "`stall` = per round, the longest time a spinning pure-Python thread was stopped "
             "(spinner) or the latest a 1 ms asyncio timer fired (asyncio) during the window; "
             "median / p99 (min-max) over rounds. `idle` = a window of the same length with "
             "no apply (floor). `CPU stall` = the same, counting only the CPU time the "
             "process used during the gap (excludes time the OS gave other processes: the "
             "figure to read on a loaded machine). `wall` = apply or revert time, median "
             "(min-max).", "",
             "| Python | gc objects | variant | watcher | window | stall median | stall p99 | "
             "stall min-max | CPU stall median | CPU stall p99 | wall median | wall min-max |",
             "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(result["rows"], key=lambda r: (r["python"], r["heap"], r["scenario"],
                                                   r["kind"], r["variant"])):
        s, c, w = r["stall"], r["stall_cpu"], r["wall"]
        lines.append(f"| {r['python']} | {r['gc_objects']:,} | {r['variant']} | "
                     f"{r['scenario']} | {r['kind']} | {ms(s['median'])} | {ms(s['p99'])} | "
                     f"{ms(s['min'])}-{ms(s['max'])} | {ms(c['median'])} | {ms(c['p99'])} | "
                     f"{ms(w['median'])} | "
                     f"{ms(w['min'])}-{ms(w['max'])} |")
    traced = [r for r in result["runs"] if r.get("trace")]
    if traced:
        lines += ["", "### Long calls in the applying thread (--trace; ms)", ""]
        agg: Dict[Any, List[int]] = {}
        for r in traced:
            for kind, name, where, took, op in r["trace"]:
                agg.setdefault((r["python"], r["heap"], r["variant"], op, kind, name, where),
                               []).append(took)
        for (py, heap, var, op, kind, name, where), v in sorted(agg.items(),
                                                                key=lambda kv: -max(kv[1])):
            lines.append(f"- {py} heap={heap} {var}, in {op}: {kind} {name} at {where}: "
                         f"{len(v)}x, max {ms(max(v))}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--pythons", default=sys.executable,
                    help="comma-separated interpreters (paths or names on PATH)")
    ap.add_argument("--heaps", default="50000,500000",
                    help="extra gc-tracked objects in the target, comma-separated")
    ap.add_argument("--n", type=int, default=100, help="functions the patch changes")
    ap.add_argument("--rounds", type=int, default=7, help="fresh processes per row (>= 5)")
    ap.add_argument("--cycles", type=int, default=4,
                    help="apply/revert cycles per process (the first is cold)")
    ap.add_argument("--scenarios", default="spinner,asyncio")
    ap.add_argument("--src", action="append", default=[], metavar="LABEL=PATH",
                    help="an engine to measure (a src/ directory); repeat to compare "
                         "(default: this checkout's src)")
    ap.add_argument("--trace", action="store_true", help="record long C calls and GCs")
    ap.add_argument("--profile", action="store_true", help="cProfile one warm apply")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: this interpreter, heap 10k, 2 rounds, 2 cycles")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="write JSON to FILE (or stdout with no FILE, instead of markdown)")
    args = ap.parse_args(argv)
    if args.target:
        print(json.dumps(target(json.loads(args.target))))
        return 0
    if args.quick:
        args.pythons, args.heaps, args.rounds, args.cycles = sys.executable, "10000", 2, 2
    pythons = [p for p in args.pythons.split(",") if p]
    heaps = [int(h) for h in args.heaps.split(",") if h]
    scenarios = [s for s in args.scenarios.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="suture-stall-"))
    try:
        variants = [snapshot(*(s.split("=", 1) if "=" in s else ("src", s)), work)
                    for s in args.src] if args.src else [snapshot("src", SRC, work)]
        for v in variants:
            v["path"] = str(Path(v["path"]))
        sys.path.insert(0, variants[-1]["path"])   # the builder: from the last variant
        patch = build_patch(args.n, work / "patch")
        for py in pythons:   # as installed: the engine's bytecode is cached, not compiled
            for v in variants:
                subprocess.run([py, "-m", "compileall", "-q", v["path"]], check=True,
                               capture_output=True)
        load_start = os.getloadavg()
        runs: List[Dict[str, Any]] = []
        for rnd in range(args.rounds):
            for py in pythons:
                for heap in heaps:
                    for scenario in scenarios:
                        for v in variants:
                            cfg = dict(patch, heap=heap, scenario=scenario, src=v["path"],
                                       cycles=args.cycles, trace=args.trace,
                                       profile=args.profile and rnd == 0)
                            print(f"... round {rnd} {py} heap={heap} {scenario} {v['label']}",
                                  file=sys.stderr)
                            got = run_target(py, cfg)
                            got.update(round=rnd, heap=heap, scenario=scenario,
                                       variant=v["label"], interpreter=py)
                            runs.append(got)
                            if args.json and args.json != "-":   # partial results survive
                                Path(args.json + ".partial").write_text(json.dumps(runs))
        result = {
            "config": {"n": args.n, "rounds": args.rounds, "cycles": args.cycles,
                       "heaps": heaps, "scenarios": scenarios, "pythons": pythons,
                       "trace": args.trace, "patch_bytes": patch["patch_bytes"]},
            "variants": [{k: v for k, v in var.items() if k != "path"} for var in variants],
            "repo": _provenance.git_state(REPO),
            "driver_python": sys.version.split()[0],
            "loadavg": {"start": load_start, "end": os.getloadavg()},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "rows": summarize(runs),
            "runs": runs,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _provenance.emit(result, args.json, markdown)
    if args.json and args.json != "-":
        Path(args.json + ".partial").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
