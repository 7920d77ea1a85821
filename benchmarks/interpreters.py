#!/usr/bin/env python3
"""What Suture costs a program that creates sub-interpreters (issue 22).

Under ``suture run`` every sub-interpreter starts its own agent while it is created
(docs/interpreters.md): it imports the runtime again (interpreters share no modules),
listens on its own socket and waits, bounded, for its start-up applies. Measured per
interpreter (default: this Python; ``--versions 3.12,3.13`` picks ``.venvs/py3.X`` of this
checkout or of /work/main), two variants in interleaved rounds:

* ``bare``: the program without Suture;
* ``agent``: the agent started as ``suture run`` starts it (``SUTURE_AGENT=1`` and the
  bootstrap directory first on ``PYTHONPATH``), with an empty state directory.

The program creates and destroys ``--count`` sub-interpreters one after the other
(``_interpreters.create()`` on 3.13+, ``_xxsubinterpreters.create()`` on 3.12) and reports
the wall time of each creation, then creates four and keeps them, and reports VmRSS before
and after (the memory each live sub-interpreter costs). Needs CPython 3.12+.

Usage (from the repository root)::

    PYTHONPATH=src python3 benchmarks/interpreters.py --versions 3.12,3.13,3.14,3.15 \\
        --rounds 7 --json interpreters.json
    PYTHONPATH=src python3 benchmarks/interpreters.py --quick --json -   # smoke: this Python

Prints a markdown table; ``--json FILE`` (``-``: stdout) writes the raw numbers, with the
commit, the dirty files and every interpreter's version.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import _provenance  # benchmarks/_provenance.py (this script's directory)
from idle import base_env, bootstrap, interpreters

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "agent")

PROGRAM = r'''
import json, sys, time
try:
    import _interpreters as I
except ImportError:
    import _xxsubinterpreters as I
count = int(sys.argv[1])
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
def make():
    i = I.create()
    return i[0] if isinstance(i, tuple) else i
times = []
for _ in range(count):
    t = time.perf_counter()
    i = make()
    times.append((time.perf_counter() - t) * 1000)
    I.destroy(i)
before = rss()
kept = [make() for _ in range(4)]
after = rss()
for i in kept:
    I.destroy(i)
print(json.dumps({"create_ms": times, "rss_per_interpreter_kib": (after - before) / 4,
                  "agent": "suture.runtime._agent" in sys.modules}))
'''


def once(python: str, variant: str, env: Dict[str, str], boot: str, count: int,
         script: Path) -> Dict[str, Any]:
    run_env = dict(env)
    if variant == "agent":
        run_env.update(SUTURE_AGENT="1", PYTHONPATH=boot)
    out = subprocess.run([python, str(script), str(count)], env=run_env, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def measure(row: Dict[str, str], rounds: int, count: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="suture-bench-interp-") as tmp:
        work = Path(tmp)
        (work / "run").mkdir(mode=0o700)
        (work / "state").mkdir(mode=0o700)
        script = work / "program.py"
        script.write_text(PROGRAM, encoding="utf-8")
        env = base_env(work)
        boot = bootstrap(row["python"], env)
        for variant in VARIANTS:          # warm the bytecode caches
            once(row["python"], variant, env, boot, 1, script)
        samples: Dict[str, Dict[str, List[float]]] = {
            v: {"create_ms": [], "rss": []} for v in VARIANTS}
        for _ in range(rounds):
            for variant in VARIANTS:      # interleaved
                got = once(row["python"], variant, env, boot, count, script)
                if got["agent"] != (variant == "agent"):
                    raise SystemExit(f"{variant}: agent loaded = {got['agent']}")
                samples[variant]["create_ms"].append(statistics.median(got["create_ms"]))
                samples[variant]["rss"].append(got["rss_per_interpreter_kib"])
    out: Dict[str, Any] = {"python": row["python"], "version": row["version"]}
    for variant in VARIANTS:
        out[variant] = {"create_ms": spread(samples[variant]["create_ms"]),
                        "rss_per_interpreter_kib": spread(samples[variant]["rss"])}
    ratios = [a / b for a, b in zip(samples["agent"]["create_ms"],
                                    samples["bare"]["create_ms"]) if b > 0]
    out["create_ratio_agent_over_bare"] = spread(ratios)
    return out


def markdown(result: Dict[str, Any]) -> str:
    lines = ["| CPython | create, bare (ms) | create, agent (ms) | agent / bare | "
             "RSS per interpreter, bare / agent (KiB) |", "| --- | --- | --- | --- | --- |"]
    for r in result["results"]:
        b, a = r["bare"], r["agent"]
        lines.append(f"| {r['version']} | {b['create_ms']['median']} | {a['create_ms']['median']}"
                     f" ({a['create_ms']['min']}-{a['create_ms']['max']}) | "
                     f"{r['create_ratio_agent_over_bare']['median']} | "
                     f"{b['rss_per_interpreter_kib']['median']:.0f} / "
                     f"{a['rss_per_interpreter_kib']['median']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", default="", help="e.g. 3.12,3.13 (default: this Python)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=10, help="creations per run")
    parser.add_argument("--quick", action="store_true", help="one round, three creations")
    parser.add_argument("--json", nargs="?", const="-", default=None)
    args = parser.parse_args()
    rows = interpreters([v for v in args.versions.split(",") if v], [])
    if not rows:
        rows = [{"python": sys.executable, "version": ".".join(map(str, sys.version_info[:3]))}]
    rounds, count = (1, 3) if args.quick else (args.rounds, args.count)
    result = dict(_provenance.git_state(ROOT), rounds=rounds, count=count,
                  results=[measure(r, rounds, count) for r in rows])
    _provenance.emit(result, args.json, markdown)


if __name__ == "__main__":
    main()
