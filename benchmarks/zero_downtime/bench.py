"""Zero downtime, measured: hotpatch vs graceful reload vs restart, under steady load.

    python -m benchmarks.zero_downtime [--seconds-before 5] [--seconds-after 10] \
        [--rate 400] [--json OUT] [--markdown OUT] [--plot OUT.png]

Two real servers, each serving a route whose code the fix changes and keeping in-memory
state (a per-process hit counter):

* ``flask-gunicorn``: Flask under gunicorn, 4 sync workers (forked, no ``--preload``);
* ``fastapi-uvicorn``: FastAPI under uvicorn, 2 workers (spawned by its process manager).

Every server runs under ``suture run`` (the agent loaded, the same for every method) on
loopback. For each server and each of three ways to get the fix in, in one run on one
machine, a load generator (loadgen.py: open loop, latency from the scheduled time) keeps
a steady rate; after ``--seconds-before`` the operation starts:

1. ``suture``: ``suture apply`` of the signed patch to the master and every worker;
2. ``reload``: the fixed file is written over the app, then the server's graceful reload:
   SIGHUP to gunicorn's master (new workers, old ones finish their requests), or to
   uvicorn's process manager (one worker at a time: a new one up, then the old one
   retired; uvicorn has this only with ``--workers``, hence 2 workers for every method);
3. ``restart``: the fixed file is written, the server is stopped (SIGTERM, waited for)
   and started again; the operation ends when it answers.

Per row: failed requests, latency p50/p99/p99.9/max in the window (from the operation's
start until every request got the fix, or the operation ended, plus one second) and in
the steady seconds before it, the throughput dip (the emptiest 100 ms of the window
against the steady rate), the time from the operation's start until every request that
starts later gets the fixed behaviour, and whether the in-memory state survived (every
answer after the operation comes from a process that answered before it, with its hit
counter still counting up).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks.procs import answers, children, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SRC = ROOT / "src"

FLASK_V1 = '''
import os
from flask import Flask, jsonify

app = Flask(__name__)
STATE = {"hits": 0}


def render(item):
    return {"item": item, "v": 1}


@app.route("/item/<int:item>")
def item(item):
    STATE["hits"] += 1
    return jsonify(pid=os.getpid(), hits=STATE["hits"], **render(item))
'''

FASTAPI_V1 = '''
import os
from fastapi import FastAPI

app = FastAPI()
STATE = {"hits": 0}


def render(item):
    return {"item": item, "v": 1}


@app.get("/item/{item}")
async def item(item: int):
    STATE["hits"] += 1
    return {"pid": os.getpid(), "hits": STATE["hits"], **render(item)}
'''


def fixed(src: str) -> str:
    """The fix: ``render`` clamps the item (the behaviour clients see is ``"v": 2``)."""
    out = src.replace('    return {"item": item, "v": 1}',
                      '    return {"item": max(0, min(int(item), 999)), "v": 2}')
    assert out != src
    return out


SERVERS: Dict[str, Dict[str, Any]] = {
    "flask-gunicorn": {"src": FLASK_V1, "workers": 4,
                       "argv": ["-m", "gunicorn", "-w", "4", "-b", "127.0.0.1:{port}",
                                "--graceful-timeout", "10", "zdapp.web:app"]},
    # --workers 2: uvicorn's graceful restart (SIGHUP) exists only under its process
    # manager, and every method runs the same configuration.
    "fastapi-uvicorn": {"src": FASTAPI_V1, "workers": 2,
                        "argv": ["-m", "uvicorn", "zdapp.web:app", "--host", "127.0.0.1",
                                 "--port", "{port}", "--workers", "2",
                                 "--log-level", "warning"]},
}
METHODS = ("suture", "reload", "restart")


# ---------------------------------------------------------------- processes

def wait(pred: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {what}")


class Host:
    """A work directory with the app, the signed patch, and the environment of a host."""

    def __init__(self, name: str, root: Path) -> None:
        from suture.tooling import trust
        from suture.tooling.build import build_trees
        from suture.tooling.build.sources import materialize

        self.name, self.root, self.spec = name, root, SERVERS[name]
        v1, v2 = self.spec["src"], fixed(self.spec["src"])
        for tag, src in (("v1", v1), ("v2", v2), ("app", v1)):
            (root / tag / "zdapp").mkdir(parents=True)
            (root / tag / "zdapp" / "__init__.py").write_text("")
            (root / tag / "zdapp" / "web.py").write_text(src)
        key, pub, _ = trust.keygen(root / "publisher", "zero-downtime-bench")
        trust.add_key(pub.read_text(), path=str(root / "config" / trust.POLICY_FILE))
        report = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")))
        assert report.data is not None
        self.patch = root / "fix.suture"
        self.patch.write_bytes(trust.sign(report.data, trust.load_private_key(key)))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUTURE_")}
        self.env.update(PYTHONPATH=os.pathsep.join([str(SRC), str(root / "app")]),
                        PYTHONDONTWRITEBYTECODE="1", SUTURE_RUNTIME_DIR=str(root / "run"),
                        SUTURE_STATE_DIR=str(root / "state"),
                        SUTURE_CONFIG_DIR=str(root / "config"))

    def deploy_fix(self) -> None:
        """What a deploy does before a reload or restart: the fixed file replaces the old."""
        target = self.root / "app" / "zdapp" / "web.py"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(fixed(self.spec["src"]))
        os.replace(tmp, target)

    def start(self, port: int) -> Tuple[subprocess.Popen, List[int]]:
        argv = [a.replace("{port}", str(port)) for a in self.spec["argv"]]
        log = open(self.root / f"server-{port}-{time.monotonic_ns()}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "suture", "run", "--", sys.executable,
                                 *argv], env=self.env, cwd=str(self.root / "app"),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        want = self.spec["workers"]

        def ready() -> Optional[List[int]]:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {proc.returncode}: see {log.name}")
            # uvicorn's manager also has multiprocessing's resource tracker as a child
            kids = children(proc.pid)
            if len(kids) < want or not answers(port, "/item/1"):
                return None
            if not all((self.root / "run" / f"{p}.sock").exists() for p in [proc.pid, *kids]):
                return None
            return [proc.pid] + kids

        try:
            return proc, wait(ready, f"{self.name} on port {port}")
        except BaseException:
            stop(proc)
            raise

    def suture(self, *args: str) -> Tuple[int, Dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "suture", *args, "--json"], env=self.env,
                             capture_output=True, text=True, timeout=120)
        return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # leftovers of the group (reloader children)
    except OSError:
        pass


# ---------------------------------------------------------------- one scenario

def scenario(name: str, method: str, work: Path, before: float, after: float, rate: float,
             conns: int) -> Dict[str, Any]:
    host = Host(name, work / f"{name}-{method}")
    port = free_port()
    proc, pids = host.start(port)
    rows_file = host.root / "rows.jsonl"
    load = subprocess.Popen([sys.executable, "-m", "benchmarks.zero_downtime.loadgen",
                             "--port", str(port), "--rate", str(rate), "--conns", str(conns),
                             "--seconds", str(before + after), "--out", str(rows_file)],
                            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    procs = [proc]
    info: Dict[str, Any] = {"server": name, "method": method, "pids_before": pids}
    try:
        time.sleep(before + 0.05)
        t_op = time.monotonic()
        if method == "suture":
            rc, out = host.suture("apply", str(host.patch), *[a for p in pids
                                                               for a in ("--pid", str(p))])
            info["apply"] = {"rc": rc, "outcomes": [r["outcome"] for r in
                                                    out.get("processes", [])],
                             "pause_us": [round(r["result"].get("pause_ns", 0) / 1e3, 1)
                                          for r in out.get("processes", [])
                                          if r.get("result")]}
        elif method == "reload":
            host.deploy_fix()
            os.kill(proc.pid, signal.SIGHUP)   # gunicorn and uvicorn: replace the workers
        else:
            host.deploy_fix()
            stop(proc)
            proc, _ = host.start(port)
            procs.append(proc)
        t_done = time.monotonic()
        load.wait(timeout=before + after + 120)
    finally:
        for p in procs:
            stop(p)
        if load.poll() is None:
            load.kill()
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    info.update(measure(rows, t_op, t_done))
    info["series"] = [(round(r["s"] - t_op, 4), round((r["t1"] - r["s"]) * 1e3, 3),
                       0 if r.get("error") else int(r.get("v") or 0)) for r in rows]
    return info


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(rows: List[Dict[str, Any]], t_op: float, t_done: float) -> Dict[str, Any]:
    def lat(rs: List[Dict[str, Any]]) -> Dict[str, float]:
        ms = [(r["t1"] - r["s"]) * 1e3 for r in rs if not r.get("error")]
        return {"p50": round(pct(ms, 0.50), 2), "p99": round(pct(ms, 0.99), 2),
                "p99.9": round(pct(ms, 0.999), 2), "max": round(max(ms, default=0), 2),
                "n": len(rs)}

    bad_after = [r["t0"] for r in rows if r["t0"] >= t_op and (r.get("error")
                                                               or r.get("v") != 2)]
    fixed_at = (max(bad_after) - t_op) if bad_after else 0.0
    any_fixed = any(r.get("v") == 2 for r in rows)
    end_w = t_op + max(fixed_at, t_done - t_op) + 1.0
    steady = [r for r in rows if t_op - 5.0 <= r["s"] < t_op]
    window = [r for r in rows if t_op <= r["s"] < end_w]
    steady_rate = len(steady) / 5.0
    buckets: Dict[int, int] = {}
    for r in rows:
        if t_op <= r["t1"] < end_w and not r.get("error"):
            buckets[int((r["t1"] - t_op) / 0.1)] = buckets.get(int((r["t1"] - t_op) / 0.1),
                                                               0) + 1
    n_buckets = max(1, int((end_w - t_op) / 0.1))
    low = min(buckets.get(i, 0) for i in range(n_buckets)) * 10.0
    # State: every answer after the operation from a process seen before it, counting on.
    before_pids: Dict[int, int] = {}
    for r in rows:
        if r["t1"] < t_op and r.get("pid"):
            before_pids[r["pid"]] = max(before_pids.get(r["pid"], 0), r["hits"])
    later = [r for r in rows if r["t0"] > end_w and r.get("pid")]
    new_pids = sorted({r["pid"] for r in later} - set(before_pids))
    reset = sorted({r["pid"] for r in later if r["pid"] in before_pids
                    and r["hits"] <= before_pids[r["pid"]]})
    return {
        "requests": len(rows),
        "failed": sum(1 for r in rows if r.get("error")),
        "failed_in_window": sum(1 for r in window if r.get("error")),
        "errors": sorted({r["error"].split(":")[0] for r in rows if r.get("error")}),
        "op_seconds": round(t_done - t_op, 3),
        "fixed_after_s": round(fixed_at, 3) if any_fixed else None,
        "window_s": round(end_w - t_op, 3),
        "steady": lat(steady), "window": lat(window),
        "steady_rate": round(steady_rate, 1),
        "dip_pct": round(100.0 * max(0.0, 1 - low / steady_rate), 1) if steady_rate else None,
        # None: no request after the window to tell (a run too short for the operation)
        "state_survived": (not new_pids and not reset) if later else None,
        "new_pids_after": new_pids,
    }


# ---------------------------------------------------------------- output

def markdown(results: List[Dict[str, Any]]) -> str:
    lines = ["| server | method | failed | p50 ms | p99 ms | p99.9 ms | max ms | p99.9 vs "
             "steady | dip | fixed after | state kept |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        w, s = r["window"], r["steady"]
        ratio = w["p99.9"] / s["p99.9"] if s["p99.9"] else float("nan")
        fixed_s = "never" if r["fixed_after_s"] is None else f"{r['fixed_after_s']:.3f} s"
        lines.append(f"| {r['server']} | {r['method']} | {r['failed_in_window']} | {w['p50']} | "
                     f"{w['p99']} | {w['p99.9']} | {w['max']} | {ratio:.2f}x | "
                     f"{r['dip_pct']} % | {fixed_s} | "
                     f"{ {True: 'yes', False: 'no', None: '?'}[r['state_survived']]} |")
    return "\n".join(lines) + "\n"


def plot(results: List[Dict[str, Any]], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(r["server"] for r in results))
    fig, axes = plt.subplots(len(servers), len(METHODS), figsize=(15, 4.2 * len(servers)),
                             sharey=True, squeeze=False)
    for r in results:
        ax = axes[servers.index(r["server"])][METHODS.index(r["method"])]
        xs = [p[0] for p in r["series"]]
        ys = [max(p[1], 0.05) for p in r["series"]]
        colors = ["#d62728" if p[2] == 0 else "#1f77b4" if p[2] == 1 else "#2ca02c"
                  for p in r["series"]]
        ax.scatter(xs, ys, s=3, c=colors, linewidths=0)
        ax.axvline(0, color="black", lw=0.8)
        if r["fixed_after_s"] is not None:
            ax.axvline(r["fixed_after_s"], color="#2ca02c", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(f"{r['server']}: {r['method']} ({r['failed_in_window']} failed)",
                     fontsize=10)
        ax.set_xlabel("seconds from the start of the operation")
        ax.grid(True, which="both", alpha=0.2)
    for row in axes:
        row[0].set_ylabel("latency, ms (log)")
    fig.suptitle("Latency of each request: blue old code, green fixed, red failed; "
                 "black line: operation starts, dashed: every later request fixed",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def machine() -> Dict[str, Any]:
    import platform
    return {"python": platform.python_version(), "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "dirty": subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                                    capture_output=True, text=True).stdout.split("\n")[:20]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.zero_downtime",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seconds-before", type=float, default=5.0)
    ap.add_argument("--seconds-after", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="suture-zd-"))
    results = []
    try:
        for name in a.servers.split(","):
            for method in a.methods.split(","):
                r = scenario(name, method, work, a.seconds_before, a.seconds_after, a.rate,
                             a.conns)
                results.append(r)
                print(f"{name:16} {method:8} failed {r['failed_in_window']:5}  p99.9 "
                      f"{r['window']['p99.9']:8} ms (steady {r['steady']['p99.9']} ms)  "
                      f"fixed after {r['fixed_after_s']} s  state kept "
                      f"{r['state_survived']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = markdown(results)
    print("\n" + table)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "rate": a.rate, "conns": a.conns,
                                      "seconds_before": a.seconds_before,
                                      "seconds_after": a.seconds_after,
                                      "results": results}, indent=1) + "\n")
    if a.markdown:
        a.markdown.write_text(table)
    if a.plot:
        plot(results, a.plot)
    return 0
