#!/usr/bin/env python3
"""Build time and patch size vs. wheel size for real release pairs.

Pairs:

* urllib3 1.26.17 -> 1.26.18 (CVE-2023-45803), from the wheels in ``tests/data/``;
* Jinja2 3.1.5 -> 3.1.6 (CVE-2025-27516), from PyPI like Django (MarkupSafe: the one
  installed beside the interpreter);
* Django 4.2.14 -> 4.2.15 (CVE-2024-41989 and others), pure-Python wheels from
  PyPI, downloaded once with
  ``python3 -m pip download --no-deps --only-binary=:all: -d <cache>/wheels
  Django==<version>`` and kept under ``~/.cache/suture-bench`` (never in the
  repository).

For each pair it measures, in this interpreter:

* ``materialize`` cold (a fresh cache directory: hashing and extracting the
  wheel) and warm (the same call again: a cache hit);
* ``diff_trees`` (reading and comparing every module) and ``build_trees``
  end to end (diff, classification, refusal decision, serialising and
  re-validating the patch), on warm trees;
* how many modules were compared, which changed, which definitions, with
  which verdicts; patch bytes vs. the fixed wheel's bytes.

If the builder refuses (exit code 3 or 4) the refusal and the changes behind
it are reported: that is a result, not a failure of the benchmark.

Unless ``--no-apply``, it then applies each patch in a fresh subprocess that
imported the old release (Django: ``settings.configure`` + ``django.setup``
first) and reports the commit pause and apply/revert times on a real package.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/build_time.py
    PYTHONPATH=src python3 benchmarks/build_time.py --json out.json
    PYTHONPATH=src python3 benchmarks/build_time.py --quick   # urllib3 only, offline
"""

from __future__ import annotations

import argparse
import gzip
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
DATA = REPO / "tests" / "data"
DEFAULT_CACHE = Path.home() / ".cache" / "suture-bench"

DJANGO_PRELUDE = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth",
                    "django.contrib.contenttypes", "django.contrib.sessions",
                    "django.contrib.messages"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()
"""

PAIRS: List[Dict[str, Any]] = [
    {"name": "urllib3", "old": "1.26.17", "new": "1.26.18", "where": "local",
     "file": "urllib3-{v}-py2.py3-none-any.whl", "cves": ["CVE-2023-45803"], "prelude": ""},
    {"name": "Django", "old": "4.2.14", "new": "4.2.15", "where": "pypi",
     "file": "Django-{v}-py3-none-any.whl",
     "cves": ["CVE-2024-41989", "CVE-2024-41990", "CVE-2024-41991", "CVE-2024-42005"],
     "prelude": DJANGO_PRELUDE,
     # Django's own requirements, only to import it in the apply test
     "deps": [("asgiref", "3.8.1", "asgiref-{v}-py3-none-any.whl"),
              ("sqlparse", "0.5.1", "sqlparse-{v}-py3-none-any.whl")]},
    # Jinja2 needs MarkupSafe, which has no pure-Python wheel: the apply test imports the
    # one installed beside this interpreter (run from the test environment).
    {"name": "Jinja2", "old": "3.1.5", "new": "3.1.6", "where": "pypi",
     "file": "jinja2-{v}-py3-none-any.whl", "cves": ["CVE-2025-27516"], "prelude": ""},
]


def stats(values: Sequence[float]) -> Dict[str, float]:
    v = sorted(values)
    if not v:
        return {"n": 0, "min": float("nan"), "median": float("nan"), "max": float("nan")}
    n = len(v)
    mid = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return {"n": n, "min": float(v[0]), "median": float(mid), "max": float(v[-1])}


# ----------------------------------------------------------------------------- apply worker
# Runs in a fresh interpreter: standard library, the old release and suture.runtime only.

def apply_worker(cfg: Dict[str, Any]) -> Dict[str, Any]:
    import gc
    import importlib

    sys.path[:0] = [cfg["root"]] + cfg["deps"]
    t0 = time.perf_counter_ns()
    if cfg["prelude"]:
        exec(compile(cfg["prelude"], "<prelude>", "exec"), {})
    imported, failed = [], {}
    for name in cfg["modules"]:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as exc:  # e.g. urllib3.contrib.securetransport needs macOS
            failed[name] = f"{type(exc).__name__}: {exc}"
    import_ns = time.perf_counter_ns() - t0

    import suture.runtime as runtime

    patch = runtime.load_patch(Path(cfg["patch"]).read_bytes())
    out: Dict[str, Any] = {"python": sys.version.split()[0], "imported": imported,
                           "import_failed": failed, "import_ms": import_ns / 1e6,
                           "gc_objects": len(gc.get_objects()), "modules_loaded":
                           len(sys.modules)}
    # Garbage collections during apply (in 3.9-3.11 they run inside the allocation
    # that triggers them, e.g. inside ast.parse; no other thread runs meanwhile).
    gc_runs: List[Any] = []
    gc_start: List[int] = [0]

    def on_gc(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter_ns()
        else:
            gc_runs.append((time.perf_counter_ns() - gc_start[0], info["generation"]))

    cycles = []
    for i in range(cfg["reps"] + 1):
        if i == 1:
            gc.callbacks.append(on_gc)
        a = time.perf_counter_ns()
        res = runtime.apply(patch)
        b = time.perf_counter_ns()
        rv = runtime.revert(patch.id)
        c = time.perf_counter_ns()
        if i == 0:
            out["states"] = res.modules
            out["ops"] = res.ops
            out["first_apply_ms"] = (b - a) / 1e6
            out["notes"] = res.notes
            continue
        cycles.append({"pause": res.pause_ns, "apply": b - a, "revert_pause": rv.pause_ns,
                       "revert": c - b})
    gc.callbacks.remove(on_gc)
    for key in ("pause", "apply", "revert_pause", "revert"):
        out[key] = stats([x[key] for x in cycles])
    n = max(1, len(cycles))
    out["gc"] = {"per_cycle": len(gc_runs) / n,
                 "gen2_per_cycle": sum(1 for _, g in gc_runs if g == 2) / n,
                 "total_ms_per_cycle": sum(d for d, _ in gc_runs) / n / 1e6,
                 "longest_ms": max((d for d, _ in gc_runs), default=0) / 1e6,
                 "longest_gen2_ms": max((d for d, g in gc_runs if g == 2), default=0) / 1e6}

    # The long single C calls of prepare (each stops every other thread for its length):
    # parsing and compiling a module's source, and heap walks with gc.get_referrers,
    # whose cost grows with the heap times the number of objects asked about.
    import ast
    import types

    def once(fn: Any) -> int:
        a = time.perf_counter_ns()
        fn()
        return time.perf_counter_ns() - a

    calls: Dict[str, Dict[str, Any]] = {}
    for mp in patch.modules:
        mod = sys.modules.get(mp.name)
        if mod is None or mp.baseline is None:
            continue
        from suture.runtime.patchfile import decode_source, resolve
        full = resolve(mp, decode_source(Path(mod.__file__).read_bytes()))  # compact: rebuild
        assert full is not None, mp.name
        text = full.fixed.whole
        funcs = [f for f in gc.get_referrers(mod.__dict__)
                 if type(f) is types.FunctionType and f.__code__.co_filename == mod.__file__]
        calls[mp.name] = {
            "source_lines": text.count("\n"), "functions": len(funcs),
            "ast.parse": min(once(lambda text=text: ast.parse(text)) for _ in range(3)),
            "compile": min(once(lambda text=text: compile(text, "x", "exec", dont_inherit=True))
                           for _ in range(3)),
            "get_referrers(dict)": min(once(lambda mod=mod: gc.get_referrers(mod.__dict__))
                                       for _ in range(3)),
            "get_referrers(*funcs)": min(once(lambda funcs=funcs: gc.get_referrers(*funcs))
                                         for _ in range(3)),
        }
    out["c_calls"] = calls

    # How long is a pure-Python thread stopped during a real apply? (see commit_pause.py)
    import threading

    from commit_pause import _Spinner

    pc = time.perf_counter_ns
    applies, busy = [], []
    spinner = _Spinner(threading)
    spinner.start(None)
    try:
        for _ in range(cfg["spin_reps"]):
            time.sleep(0.005)
            a = pc()
            runtime.apply(patch)
            applies.append((a, pc()))
            runtime.revert(patch.id)
            time.sleep(0.005)
            a = pc()
            end = a + (applies[-1][1] - applies[-1][0])
            while pc() < end:  # plain Python work of the same length: the baseline
                pass
            busy.append((a, pc()))
    finally:
        spinner.stop()
    out["spinner_apply"] = spinner.judge(applies)
    out["spinner_busy"] = spinner.judge(busy)
    return out


# ----------------------------------------------------------------------------- parent

def wheel_path(pair: Dict[str, Any], version: str, cache: Path) -> Path:
    name = pair["file"].format(v=version)
    if pair["where"] == "local":
        return DATA / name
    return pypi_wheel(pair["name"], version, cache / "wheels" / name)


def pypi_wheel(project: str, version: str, path: Path) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(path.parent),
               f"{project}=={version}"]
        print("... " + " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def bench_pair(pair: Dict[str, Any], cache: Path, reps: int, apply: bool,
               apply_reps: int, spin_reps: int, src: str) -> Dict[str, Any]:
    from suture.tooling.build import BuildRefused, build_trees, diff_trees
    from suture.tooling.build.sources import materialize

    pc = time.perf_counter_ns
    old_whl, new_whl = wheel_path(pair, pair["old"], cache), wheel_path(pair, pair["new"], cache)
    out: Dict[str, Any] = {"pair": f"{pair['name']} {pair['old']} -> {pair['new']}",
                           "old_wheel_bytes": old_whl.stat().st_size,
                           "new_wheel_bytes": new_whl.stat().st_size}

    # materialize: cold = fresh cache dir each time; warm = the call repeated
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    cold: Dict[str, List[int]] = {"old": [], "new": []}
    warm: Dict[str, List[int]] = {"old": [], "new": []}
    for _ in range(reps):
        scratch = Path(tempfile.mkdtemp(prefix="cold-", dir=cache / "tmp"))
        try:
            for side, whl in (("old", old_whl), ("new", new_whl)):
                t = pc()
                materialize(str(whl), cache_dir=scratch)
                cold[side].append(pc() - t)
                t = pc()
                materialize(str(whl), cache_dir=scratch)
                warm[side].append(pc() - t)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    out["materialize_cold"] = {k: stats(v) for k, v in cold.items()}
    out["materialize_warm"] = {k: stats(v) for k, v in warm.items()}

    trees_cache = cache / "suture-cache"
    old = materialize(str(old_whl), cache_dir=trees_cache)
    new = materialize(str(new_whl), cache_dir=trees_cache)
    old_mods, new_mods = old.modules(), new.modules()
    out["modules_old"], out["modules_new"] = len(old_mods), len(new_mods)
    out["modules_compared"] = len(set(old_mods) | set(new_mods))
    out["other_files_compared"] = len(set(old.other_files()) | set(new.other_files()))
    out["source_bytes_new"] = sum(p.stat().st_size for p in new_mods.values())

    diff_ns, build_ns = [], []
    report = None
    refused: Optional[Dict[str, Any]] = None
    for _ in range(reps):
        t = pc()
        diff_trees(old, new)
        diff_ns.append(pc() - t)
        t = pc()
        try:
            report = build_trees(old, new, cves=pair["cves"])
        except BuildRefused as exc:
            report = exc.report
            refused = {"exit_code": exc.exit_code, "message": exc.message,
                       "blockers": [c for c in report.changes()
                                    if c["verdict"] in ("restart", "hook")]}
        build_ns.append(pc() - t)
    assert report is not None
    out["diff_trees"] = stats(diff_ns)
    out["build_trees"] = stats(build_ns)
    out["refused"] = refused
    out["changed_modules"] = [{"name": m.name, "status": m.status,
                               "changes": [(c.kind, c.qualname, c.verdict) for c in m.changes]}
                              for m in report.modules]
    out["changed_files"] = report.files
    changes = report.changes()
    out["changes"] = len(changes)
    out["verdicts"] = {v: sum(1 for c in changes if c["verdict"] == v)
                       for v in sorted({c["verdict"] for c in changes})}
    if report.data is not None:
        out["patch_bytes"] = len(report.data)
        out["patch_gzip_bytes"] = len(gzip.compress(report.data, 9))
        embedded = build_trees(old, new, cves=pair["cves"], embed_sources=True).data
        assert embedded is not None     # the same patch with whole sources (format 1)
        out["patch_embedded_bytes"] = len(embedded)
        out["patch_id"] = report.patch.id if report.patch else None
    if apply and report.data is not None:
        patch_file = cache / "tmp" / f"{pair['name']}-{pair['old']}-{pair['new']}.suture"
        patch_file.write_bytes(report.data)
        try:
            assert report.patch is not None
            mods = [m.name for m in report.patch.modules if m.action == "change"]
            deps = [str(materialize(str(pypi_wheel(n, v, cache / "deps" / f.format(v=v))),
                                    cache_dir=trees_cache).root)
                    for n, v, f in pair.get("deps", [])]
            cfg = {"root": str(old.root), "deps": deps, "patch": str(patch_file),
                   "modules": mods, "prelude": pair["prelude"], "reps": apply_reps,
                   "spin_reps": spin_reps}
            env = dict(os.environ, PYTHONPATH=src, PYTHONDONTWRITEBYTECODE="1")
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                   "--apply-worker", json.dumps(cfg)],
                                  capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                out["apply"] = {"error": proc.stderr[-3000:]}
            else:
                out["apply"] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            patch_file.unlink()
    return out


def ms(ns: float) -> str:
    return "-" if ns != ns else f"{ns / 1e6:.1f}"


def markdown(result: Dict[str, Any]) -> str:
    reps = result["config"]["reps"]
    rows = result["pairs"]
    out = [f"### Build time (ms, median of {reps}; min in brackets)", "",
           "| Pair | materialize cold old + new | materialize warm old + new | diff_trees | "
           "build_trees (end to end) |",
           "|---|---:|---:|---:|---:|"]
    for r in rows:
        c, w = r["materialize_cold"], r["materialize_warm"]
        out.append(
            f"| {r['pair']} | {ms(c['old']['median'])} + {ms(c['new']['median'])} | "
            f"{ms(w['old']['median'])} + {ms(w['new']['median'])} | "
            f"{ms(r['diff_trees']['median'])} ({ms(r['diff_trees']['min'])}) | "
            f"{ms(r['build_trees']['median'])} ({ms(r['build_trees']['min'])}) |")
    out += ["", "### What was compared and what the patch weighs", "",
            "| Pair | modules compared | other files compared | changed modules | changes "
            "(by verdict) | result | patch bytes | patch gzip -9 | with whole sources "
            "(`--embed-sources`) | fixed wheel bytes | wheel / patch |",
            "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items())
        result_s = (f"refused, exit {r['refused']['exit_code']}" if r["refused"]
                    else "patch built")
        pb = r.get("patch_bytes")
        size = (f"{pb:,} | {r['patch_gzip_bytes']:,} | {r['patch_embedded_bytes']:,} | "
                f"{r['new_wheel_bytes']:,} | {r['new_wheel_bytes'] / pb:.0f}\u00d7" if pb
                else f"- | - | - | {r['new_wheel_bytes']:,} | -")
        out.append(
            f"| {r['pair']} | {r['modules_compared']} | {r['other_files_compared']} | "
            f"{len(r['changed_modules'])} | {r['changes']} ({verdicts}) | {result_s} | {size} |")
    out += ["", "### Changed definitions", ""]
    for r in rows:
        out.append(f"**{r['pair']}**" + (" — refused: " + r["refused"]["message"]
                                          if r["refused"] else ""))
        out.append("")
        for m in r["changed_modules"]:
            defs = "; ".join(f"{k} `{q}` ({v})" for k, q, v in m["changes"])
            out.append(f"- `{m['name']}` ({m['status']}): {defs}")
        for f in r["changed_files"]:
            out.append(f"- file `{f['path']}`: {f['kind']} ({f['verdict']})")
        out.append("")
    applied = [r for r in rows if "apply" in r]
    if applied:
        ar = result["config"]["apply_reps"]
        out += [f"### Applying the patch to a process running the old release (median of {ar} "
                "apply/revert cycles after one warm-up)", "",
                "`longest stop` = the longest time a spinning pure-Python thread was stopped "
                f"during an apply (ms, median / max of {result['config']['spin_reps']}); "
                "`baseline` = the same while the main thread ran plain Python for as long.", "",
                "| Pair | Python | gc objects | modules patched | ops | pause µs (min / median "
                "/ max) | apply ms | first apply ms | revert pause µs | revert ms | "
                "longest stop | baseline | GCs per apply+revert (gen 2) | longest GC ms |",
                "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in applied:
            a = r["apply"]
            if "error" in a:
                out.append(f"| {r['pair']} | error: {a['error'][-200:]!r} |")
                continue
            by_state: Dict[str, List[str]] = {}
            for mod_name, state in a["states"].items():
                by_state.setdefault(state, []).append(mod_name)
            states = ", ".join(f"{len(v)} {k}" + ("" if k == "applied" else f" ({', '.join(v)})")
                               for k, v in by_state.items())
            sa = a["spinner_apply"]["max_overlapping_gap_ns"]
            sb = a["spinner_busy"]["max_overlapping_gap_ns"]
            p = a["pause"]
            out.append(
                f"| {r['pair']} | {a['python']} | {a['gc_objects']:,} | {states} | {a['ops']} | "
                f"{p['min'] / 1e3:.1f} / {p['median'] / 1e3:.1f} / {p['max'] / 1e3:.1f} | "
                f"{ms(a['apply']['median'])} | {a['first_apply_ms']:.1f} | "
                f"{a['revert_pause']['median'] / 1e3:.1f} | {ms(a['revert']['median'])} | "
                f"{ms(sa['median'])} / {ms(sa['max'])} | {ms(sb['median'])} / {ms(sb['max'])} | "
                f"{a['gc']['per_cycle']:.0f} ({a['gc']['gen2_per_cycle']:.1f}) | "
                f"{a['gc']['longest_ms']:.1f} |")
    probed = [r for r in applied if "c_calls" in r["apply"]]
    if probed:
        out += ["", "### Long single C calls of prepare, per patched module (ms, min of 3)", "",
                "Each is one C call: no other thread runs during it. `get_referrers(*funcs)` "
                "asks about every function of the module at once; its cost grows with heap "
                "size × number of functions.", "",
                "| Pair | module | lines | functions | ast.parse | compile | "
                "get_referrers(dict) | get_referrers(*funcs) |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in probed:
            for name, c in r["apply"]["c_calls"].items():
                out.append(f"| {r['pair']} | `{name}` | {c['source_lines']:,} | "
                           f"{c['functions']} | {ms(c['ast.parse'])} | {ms(c['compile'])} | "
                           f"{ms(c['get_referrers(dict)'])} | "
                           f"{ms(c['get_referrers(*funcs)'])} |")
    return "\n".join(out) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apply-worker", help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="where downloaded wheels and unpacked trees are kept "
                         "(default ~/.cache/suture-bench)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--apply-reps", type=int, default=20)
    ap.add_argument("--spin-reps", type=int, default=10,
                    help="applies watched by a spinning thread")
    ap.add_argument("--no-apply", action="store_true")
    ap.add_argument("--no-django", action="store_true", help="skip the pair that needs PyPI")
    ap.add_argument("--pairs", default="", help="comma-separated names (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: urllib3 only (offline), 1 rep, 2 apply cycles")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE",
                    help="write JSON to FILE (or stdout with no FILE, instead of markdown)")
    args = ap.parse_args(argv)
    if args.apply_worker:
        print(json.dumps(apply_worker(json.loads(args.apply_worker))))
        return 0
    if args.quick:
        args.reps, args.apply_reps, args.spin_reps, args.no_django = 1, 2, 2, True
    pairs = [p for p in PAIRS if not (args.no_django and p["where"] == "pypi")
             and (not args.pairs or p["name"] in args.pairs.split(","))]
    rows = []
    load_start = os.getloadavg()
    from commit_pause import snapshot_source

    work = Path(tempfile.mkdtemp(prefix="suture-bench-"))
    try:
        source = snapshot_source(work)  # builder and workers: the same copy of src/suture
        sys.path.insert(0, source["path"])
        for pair in pairs:
            print(f"... {pair['name']} {pair['old']} -> {pair['new']}", file=sys.stderr)
            rows.append(bench_pair(pair, args.cache, args.reps, not args.no_apply,
                                   args.apply_reps, args.spin_reps, source["path"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"config": {"reps": args.reps, "apply_reps": args.apply_reps,
                         "spin_reps": args.spin_reps, "cache": str(args.cache)},
              "loadavg": {"start": load_start, "end": os.getloadavg()},
              "suture": {k: v for k, v in source.items() if k != "path"},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": sys.version.split()[0]},
              "pairs": rows}
    _provenance.emit(result, args.json, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
