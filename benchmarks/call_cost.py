#!/usr/bin/env python3
"""What does a call into a patched function cost? Instruction counts, per Python version.

For every interpreter (default: /work/main/.venvs/py3.9 .. py3.15, or ``--pythons``) and
every variant below, a fresh worker process runs under ``valgrind --tool=callgrind``:

* ``unpatched``: a hot call site (a ``for`` loop calling a module's function through an
  alias imported with ``from m import answer``) warmed up, then timed;
* ``engine``: the same, but after the warm-up Suture's engine applies a real patch
  (``suture.runtime.apply`` of a patch built by ``suture.tooling.build.build_trees`` from
  the module's two releases), which swaps ``answer.__code__`` in place; warmed up again,
  then timed;
* ``bare``: the same with a bare ``answer.__code__ = <fixed code>`` instead of the engine,
  to tell the engine's doing from the interpreter's;
* ``loop``: the loop alone (its body does not call), subtracted to give the net cost of
  one call; ``loop_engine``: the same after the engine's apply (its garbage leaves the
  allocator in another state, which a loop pays on every int it allocates on 3.12/3.13).

The count that matters is the steady state. The worker calls ``os.getppid()`` right
before and right after the timed loop, and callgrind dumps its counters on each entry to
libc's ``getppid`` (``--dump-before=getppid``): the second of the three dumps holds the
timed loop alone. That needs no symbol of the interpreter (``--toggle-collect`` on an
interpreter function would need one per version and build: the 3.14/3.15 binaries are
PGO/LTO builds that inline the evaluation loop differently), and it keeps out the apply,
whose count varies from run to run (the engine's waits poll a clock, and valgrind runs
the process about 50 times slower). Each variant runs twice, with ``N1`` and ``N2`` timed
iterations (``PYTHONHASHSEED=0``; the collector collected, then disabled for the timed
loop), and the cost per iteration is ``(Ir(N2) - Ir(N1)) / (N2 - N1)``, which also cancels
the two ``getppid`` calls.

The worker also reports what the call site became (``dis`` with ``adaptive=True``, 3.11+):
``CALL_PY_EXACT_ARGS`` is specialised; a plain ``CALL`` is not. On 3.13+ assigning
``__code__`` resets the function's version for good (gh-117045), so the site stays
unspecialised: docs/performance.md, "Call cost of patched functions".

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/call_cost.py                 # markdown table
    PYTHONPATH=src python3 benchmarks/call_cost.py --json out.json
    PYTHONPATH=src python3 benchmarks/call_cost.py --quick --json  # smoke: this Python

The parent needs ``suture.tooling`` (to build the patch); the workers import only the
standard library and ``suture.runtime``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
VENVS = Path("/work/main/.venvs")
VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15")
VARIANTS = ("loop", "unpatched", "engine", "bare", "loop_engine")
PKG = "sutcallcost"

# Both releases cost the same per call: only a constant differs.
V1 = "def answer(x):\n    return x + 1\n"
V2 = "def answer(x):\n    return x + 2\n"

WORKER = r'''
import dis, json, sys
variant, n, warm, root, patch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, root)
from sutcallcost import answer

def hot(n):
    for i in range(n):
        answer(i)

def loop(n):
    for i in range(n):
        pass

def site(fn):
    # what the call site is now: specialised (CALL_PY_EXACT_ARGS) or not (CALL)
    try:
        ins = dis.get_instructions(fn, adaptive=True)
    except TypeError:       # 3.9, 3.10: no adaptive view
        return None
    return [i.opname for i in ins if i.opname.startswith("CALL")]

hot(warm)                       # specialised, as a long-running process has it
if variant in ("engine", "loop_engine"):
    import suture.runtime as rt
    with open(patch, "rb") as f:
        result = rt.apply(f.read())
    assert result.state == "applied", result
elif variant == "bare":
    ns = {}
    exec(compile(open(root + "/../fixed.py").read(), "fixed", "exec"), ns)
    answer.__code__ = ns["answer"].__code__
hot(warm)                       # the steady state after the patch
# No collection inside the timed loop: the engine's apply leaves garbage the other variants
# do not, and a collection that falls in one of the two runs only is no cost of a call.
import gc, os
gc.collect()
gc.disable()
os.getppid()                    # callgrind dumps its counters here (--dump-before=getppid)
(loop if variant.startswith("loop") else hot)(n)
os.getppid()                    # and here: the second dump holds the timed loop alone
gc.enable()
print(json.dumps({"answer": answer(0), "site": site(hot),
                  "jit": bool(getattr(getattr(sys, "_jit", None), "is_enabled", lambda: False)())}))
'''


def interpreters(versions: Sequence[str]) -> List[Dict[str, str]]:
    out = []
    for v in versions:
        exe = VENVS / f"py{v}" / "bin" / "python"
        if exe.exists():
            out.append({"version": v, "python": str(exe)})
    return out


def build_patch(work: Path) -> Path:
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize
    for name, body in (("v1", V1), ("v2", V2)):
        (work / name / PKG).mkdir(parents=True)
        (work / name / PKG / "__init__.py").write_text(body)
    (work / "fixed.py").write_text(V2)   # for the bare assignment
    report = build_trees(materialize(str(work / "v1")), materialize(str(work / "v2")))
    path = work / "fix.suture"
    path.write_bytes(report.data)
    return path


def callgrind(python: str, variant: str, n: int, warm: int, work: Path, patch: Path) -> Dict[str, Any]:
    out = work / f"cg.{os.getpid()}.{variant}.{n}.out"
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    for k in [k for k in env if k.startswith("SUTURE_")]:
        del env[k]
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                           "--dump-before=getppid",
                           python, "-c", WORKER, variant, str(n), str(warm),
                           str(work / "v1"), str(patch)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} {variant} n={n}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    dumps = sorted(work.glob(out.name + "*"))
    if len(dumps) != 3:
        raise RuntimeError(f"expected 3 callgrind dumps (before, timed, after), got {dumps}")
    totals = {}
    for d in dumps:
        found = re.search(r"^totals: (\d+)", d.read_text(), re.M)
        if found is None:
            raise RuntimeError(f"no totals in {d}")
        totals[d.name[len(out.name):]] = int(found.group(1))
        d.unlink()
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), ir=totals[".2"],
                ir_whole=sum(totals.values()))


def measure(python: str, n1: int, n2: int, warm: int, work: Path, patch: Path) -> Dict[str, Any]:
    row: Dict[str, Any] = {}
    for variant in VARIANTS:
        a = callgrind(python, variant, n1, warm, work, patch)
        b = callgrind(python, variant, n2, warm, work, patch)
        expect = 0 + (2 if variant in ("engine", "bare", "loop_engine") else 1)
        if a["answer"] != expect or b["answer"] != expect:
            raise RuntimeError(f"{variant}: answer(0) is {b['answer']}, expected {expect}")
        row[variant] = {"ir_per_iteration": (b["ir"] - a["ir"]) / (n2 - n1),
                        "ir": [a["ir"], b["ir"]], "call_site": b["site"], "jit": b["jit"]}
    loop = row["loop"]["ir_per_iteration"]
    for variant in ("unpatched", "engine", "bare"):
        row[variant]["ir_per_call"] = round(row[variant]["ir_per_iteration"] - loop, 1)
    # The loop alone after the engine's apply: the apply leaves the allocator in another
    # state, which 3.12/3.13 (no int freelist) pay on every int the loop allocates, call
    # or no call. Subtracted, what is left is the call.
    row["engine"]["ir_per_call_same_state"] = round(
        row["engine"]["ir_per_iteration"] - row["loop_engine"]["ir_per_iteration"], 1)
    base = row["unpatched"]["ir_per_call"]
    row["ratio_engine"] = round(row["engine"]["ir_per_call"] / base, 3)
    row["ratio_bare"] = round(row["bare"]["ir_per_call"] / base, 3)
    row["ratio_engine_iteration"] = round(row["engine"]["ir_per_iteration"]
                                          / row["unpatched"]["ir_per_iteration"], 3)
    return row


def table(results: List[Dict[str, Any]]) -> str:
    lines = ["| Python | loop alone | unpatched call | patched (engine) | patched (bare `__code__ =`) "
             "| engine / unpatched | call site after the patch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        m = r["measured"]
        site = m["engine"]["call_site"]
        lines.append(f"| {r['version']} | {m['loop']['ir_per_iteration']:.1f} | "
                     f"{m['unpatched']['ir_per_call']:.1f} | {m['engine']['ir_per_call']:.1f} | "
                     f"{m['bare']['ir_per_call']:.1f} | {m['ratio_engine']:.2f} | "
                     f"{', '.join(site) if site else 'n/a (no adaptive view before 3.11)'} "
                     f"(unpatched: {', '.join(m['unpatched']['call_site'] or ['n/a'])}) |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pythons", nargs="*", help="interpreters (default: the venvs 3.9-3.15)")
    ap.add_argument("--n1", type=int, default=50_000)
    ap.add_argument("--n2", type=int, default=250_000)
    ap.add_argument("--warm", type=int, default=20_000)
    ap.add_argument("--quick", action="store_true", help="this Python only, small counts")
    ap.add_argument("--json", nargs="?", const="-", help="write JSON here ('-': stdout)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 1
    if args.quick:
        pythons = [{"version": "{}.{}".format(*sys.version_info[:2]), "python": sys.executable}]
        args.n1, args.n2, args.warm = 2_000, 12_000, 2_000
    elif args.pythons:
        pythons = [{"version": subprocess.run([p, "-c", "import sys; print('%d.%d' % "
                                               "sys.version_info[:2])"], capture_output=True,
                                              text=True).stdout.strip(), "python": p}
                   for p in args.pythons]
    else:
        pythons = interpreters(VERSIONS)
    results = []
    with tempfile.TemporaryDirectory(prefix="sut-callcost-") as tmp:
        work = Path(tmp)
        patch = build_patch(work)
        for p in pythons:
            print(f"measuring {p['version']} ({p['python']})", file=sys.stderr)
            full = subprocess.run([p["python"], "-c", "import sys; print(sys.version)"],
                                  capture_output=True, text=True).stdout.strip()
            results.append(dict(p, full_version=full,
                                measured=measure(p["python"], args.n1, args.n2, args.warm,
                                                 work, patch)))
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True,
                              text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.split()[1::2]
    doc = {"date": datetime.date.today().isoformat(), "commit": commit, "uncommitted": dirty,
           "machine": platform.machine(),
           "valgrind": valgrind, "n1": args.n1, "n2": args.n2, "warm": args.warm,
           "results": results}
    if args.json == "-":
        print(json.dumps(doc, indent=2))
    else:
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
