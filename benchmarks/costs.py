#!/usr/bin/env python3
"""What Suture costs on a host: apply latency, fan-out, and the idle agent.

    PYTHONPATH=src python3 benchmarks/costs.py [--fanout 50,200] [--json OUT] [--quick]

1. **Apply to one process, end to end.** A target with the agent and a small module;
   ``fanout.apply`` (what ``suture apply`` runs after parsing its arguments: signature
   check not included, socket, the agent's apply, the answer) timed in this process,
   revert in between, and the whole ``suture apply`` command for comparison, whose
   difference is interpreter start-up and imports.
2. **Fan-out.** N idle targets (50, 200), each with the agent and the module imported;
   the time until every one has answered ``applied``, with the default parallelism (one
   per CPU) and with 32 at once.
3. **Attach.** ``suture attach PID`` to an idle interpreter without the agent (gdb).
4. **The import hook.** Import time of a large set of modules (FastAPI, Flask, uvicorn,
   gunicorn and some of the standard library) in fresh processes, with the hook installed
   (an applied patch waiting for its module) and without, alternating.
5. **The idle agent.** Request throughput of a single-process uvicorn server saturated by
   the load generator, with and without the agent loaded (same run, alternating, 3
   rounds each), and the resident memory of an idle interpreter with and without it.

Prints markdown tables; ``--json FILE`` writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path[:0] = [str(SRC), str(ROOT)]

TARGET = r'''
import sys, time
if sys.argv[1] == "agent":
    import suture.agent
    suture.agent.start()
import tiny.calc
print("ready", flush=True)
sys.stdin.read()
'''


def tree(root: Path, body: str) -> Path:
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text("")
    (root / "tiny" / "calc.py").write_text(f"def value():\n    return {body}\n")
    return root


def start_targets(n: int, work: Path, env: Dict[str, str]) -> List[subprocess.Popen]:
    script = work / "target.py"
    script.write_text(TARGET)
    procs = [subprocess.Popen([sys.executable, str(script), "agent"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    run = Path(env["SUTURE_RUNTIME_DIR"])
    end = time.monotonic() + 60
    while not all((run / f"{p.pid}.sock").exists() for p in procs):
        if time.monotonic() > end:
            raise RuntimeError("agents did not start")
        time.sleep(0.01)
    return procs


def stop_all(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def apply_costs(work: Path, sizes: List[int], reps: int) -> Dict[str, Any]:
    from suture.runtime.patchfile import load
    from suture.tooling.fleet import fanout
    from suture.tooling import trust
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

    report = build_trees(materialize(str(tree(work / "v1", "1"))),
                         materialize(str(tree(work / "v2", "2"))))
    assert report.data is not None
    key, pub, _ = trust.keygen(work / "k", "costs")
    trust.add_key(pub.read_text(), path=str(work / "config" / trust.POLICY_FILE))
    data = trust.sign(report.data, trust.load_private_key(key))
    (work / "fix.suture").write_bytes(data)
    patch = load(data)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(work / "v1")]),
               SUTURE_RUNTIME_DIR=str(work / "run"), SUTURE_STATE_DIR=str(work / "state"),
               SUTURE_CONFIG_DIR=str(work / "config"), PYTHONDONTWRITEBYTECODE="1")
    saved = {k: os.environ.get(k) for k in ("SUTURE_RUNTIME_DIR", "SUTURE_STATE_DIR",
                                            "SUTURE_CONFIG_DIR")}
    os.environ.update({k: env[k] for k in saved})
    out: Dict[str, Any] = {}
    try:
        procs = start_targets(1, work, env)
        pid = procs[0].pid
        one, cli = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            rows = fanout.apply(data, patch, [pid])
            one.append((time.perf_counter() - t0) * 1e3)
            assert rows[0].outcome == "applied", rows[0]
            fanout.revert(patch.id, [pid])
        for _ in range(max(3, reps // 4)):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "suture", "apply", str(work / "fix.suture"),
                                   "--pid", str(pid), "--json"], env=env, capture_output=True)
            cli.append((time.perf_counter() - t0) * 1e3)
            assert done.returncode == 0, done.stderr
            fanout.revert(patch.id, [pid])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import suture.tooling.cli, suture.tooling.trust"],
                       env=env, check=True)
        startup = (time.perf_counter() - t0) * 1e3
        stop_all(procs)
        out["one"] = {"fleet_apply_ms": summary(one), "cli_apply_ms": summary(cli),
                      "cli_startup_and_imports_ms": round(startup, 1)}
        out["fanout"] = []
        for n in sizes:
            procs = start_targets(n, work, env)
            pids = [p.pid for p in procs]
            row: Dict[str, Any] = {"processes": n}
            for label, parallel in (("default", None), ("32", 32)):
                t0 = time.perf_counter()
                rows = fanout.apply(data, patch, pids, parallel=parallel)
                row[f"apply_s_{label}"] = round(time.perf_counter() - t0, 3)
                assert all(r.outcome == "applied" for r in rows), [r.reason for r in rows
                                                                   if r.outcome != "applied"]
                fanout.revert(patch.id, pids, parallel=32)
            row["parallel_default"] = fanout.default_parallel()
            stop_all(procs)
            out["fanout"].append(row)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


def attach_costs(work: Path, reps: int) -> Dict[str, Any]:
    """``suture attach PID`` on an idle interpreter without the agent (gdb, this Python)."""
    import shutil

    if shutil.which("gdb") is None:
        return {"skipped": "gdb is not installed"}
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=str(work / "run3"),
               PYTHONDONTWRITEBYTECODE="1")
    times = []
    for _ in range(reps):
        p = subprocess.Popen([sys.executable, "-c", "import sys, time\nprint('ready', "
                              "flush=True)\nwhile True: time.sleep(0.01)\n"], env=env,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "suture", "attach", str(p.pid), "--json"],
                              env=env, capture_output=True, text=True)
        times.append((time.perf_counter() - t0) * 1e3)
        p.kill()
        p.wait()
        if done.returncode:
            return {"skipped": f"attach failed: {done.stdout[-300:]} {done.stderr[-300:]}"}
    return {"attach_ms": summary(times)}


IMPORTS = ("fastapi", "flask", "uvicorn", "gunicorn.app.wsgiapp", "email.mime.multipart",
           "http.server", "asyncio", "json", "sqlite3", "xml.etree.ElementTree")

HOOKED = r'''
import sys, time
from pathlib import Path
from suture import runtime    # both ways: what it imports is not counted against the hook
if sys.argv[1] == "hook":
    result = runtime.apply(Path(sys.argv[2]).read_bytes())
    assert result.state == "pending import", result.state   # the import hook is installed
t0 = time.perf_counter()
for name in sys.argv[3].split(","):
    __import__(name)
print((time.perf_counter() - t0) * 1e3)
'''


def import_hook_costs(work: Path, rounds: int) -> Dict[str, Any]:
    """Import time of a large set of modules with Suture's import hook installed (an
    applied patch whose module is not imported yet) and without, fresh processes,
    alternating."""
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

    report = build_trees(materialize(str(tree(work / "v1", "1"))),
                         materialize(str(tree(work / "v2", "2"))))
    assert report.data is not None
    (work / "p.suture").write_bytes(report.data)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(work / "v1")]))
    times: Dict[str, List[float]] = {"hook": [], "plain": []}
    for _ in range(rounds):
        for label in ("plain", "hook"):
            out = subprocess.run([sys.executable, "-c", HOOKED, label, str(work / "p.suture"),
                                  ",".join(IMPORTS)], env=env, capture_output=True, text=True,
                                 check=True)
            times[label].append(float(out.stdout))
    hook_m, plain_m = statistics.median(times["hook"]), statistics.median(times["plain"])
    return {"modules": list(IMPORTS), "import_ms": {k: summary(v) for k, v in times.items()},
            "ratio_median": round(hook_m / plain_m, 3)}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_costs(work: Path, seconds: float, rounds: int) -> Dict[str, Any]:
    from benchmarks.procs import answers, free_port
    from benchmarks.zero_downtime.bench import FASTAPI_V1

    (work / "app" / "zdapp").mkdir(parents=True)
    (work / "app" / "zdapp" / "__init__.py").write_text("")
    (work / "app" / "zdapp" / "web.py").write_text(FASTAPI_V1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(work / "app")]),
               SUTURE_RUNTIME_DIR=str(work / "run2"), SUTURE_STATE_DIR=str(work / "state2"),
               PYTHONDONTWRITEBYTECODE="1")
    rates: Dict[str, List[float]] = {"with": [], "without": []}
    for _ in range(rounds):
        for label in ("without", "with"):
            port = free_port()
            prefix = [sys.executable, "-m", "suture", "run", "--"] if label == "with" else []
            server = subprocess.Popen(prefix + [sys.executable, "-m", "uvicorn", "zdapp.web:app",
                                                "--port", str(port), "--log-level", "warning"],
                                      env=env, cwd=str(work / "app"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.monotonic() + 60
            while not answers(port, "/item/1"):
                if time.monotonic() > end:
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.02)
            rows_file = work / f"rows-{label}.jsonl"
            subprocess.run([sys.executable, "-m", "benchmarks.zero_downtime.loadgen", "--port",
                            str(port), "--rate", "20000", "--conns", "32", "--seconds",
                            str(seconds), "--out", str(rows_file)],
                           cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
            server.kill()
            server.wait()
            rows = [json.loads(x) for x in rows_file.read_text().splitlines()]
            ok = [r for r in rows if not r.get("error")]
            span = max(r["t1"] for r in ok) - min(r["t0"] for r in ok)
            rates[label].append(len(ok) / span)
    rss = {}
    for label in ("without", "with"):
        code = ("import sys, time\n" + ("import suture.agent; suture.agent.start()\n"
                                        if label == "with" else "")
                + "print('ready', flush=True); sys.stdin.read()\n")
        p = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        time.sleep(0.3)
        rss[label] = rss_kib(p.pid)
        p.kill()
        p.wait()
    with_m, without_m = statistics.median(rates["with"]), statistics.median(rates["without"])
    return {"requests_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
            "ratio_median": round(with_m / without_m, 3),
            "rss_kib": rss, "rss_delta_kib": rss["with"] - rss["without"]}


def summary(ms: List[float]) -> Dict[str, float]:
    ms = sorted(ms)
    return {"median": round(statistics.median(ms), 2), "min": round(ms[0], 2),
            "max": round(ms[-1], 2), "n": len(ms)}


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fanout", default="50,200")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--idle-rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few seconds: tiny sizes")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT")
    a = ap.parse_args(argv)
    if a.quick:
        a.fanout, a.reps, a.idle_seconds, a.idle_rounds = "3", 3, 1.0, 1
    fanout = [int(x) for x in a.fanout.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="suture-costs-") as d:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        result = {"python": sys.version.split()[0], "nproc": os.cpu_count(), "commit": commit,
                  "apply": apply_costs(Path(d) / "apply", fanout, a.reps),
                  "idle": idle_costs(Path(d) / "idle", a.idle_seconds, a.idle_rounds),
                  "attach": attach_costs(Path(d) / "attach", 1 if a.quick else 5),
                  "import_hook": import_hook_costs(Path(d) / "hook", 2 if a.quick else 10)}
    if a.json == "-":
        print(json.dumps(result, indent=1))
        return 0
    one, idle = result["apply"]["one"], result["idle"]
    print(f"apply to one process: fanout.apply median {one['fleet_apply_ms']['median']} ms "
          f"(min {one['fleet_apply_ms']['min']}, max {one['fleet_apply_ms']['max']}); "
          f"`suture apply` median {one['cli_apply_ms']['median']} ms, of which start-up and "
          f"imports ~{one['cli_startup_and_imports_ms']} ms")
    for row in result["apply"]["fanout"]:
        print(f"fan-out to {row['processes']}: {row['apply_s_default']} s "
              f"(parallel {row['parallel_default']}), {row['apply_s_32']} s (parallel 32)")
    print(f"suture attach: {result['attach']}")
    print(f"import hook: {result['import_hook']['import_ms']}, ratio "
          f"{result['import_hook']['ratio_median']}")
    print(f"idle agent: throughput ratio {idle['ratio_median']} "
          f"({idle['requests_per_s']}), RSS +{idle['rss_delta_kib']} KiB")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
