"""Zero downtime, measured: hotpatch vs graceful reload vs restart, under steady load.

    python -m benchmarks.zero_downtime [--rounds 5] [--warmup 1] [--window 3] \
        [--steady-windows 3] [--seconds-after 10] [--rate 400] [--json OUT] \
        [--markdown OUT] [--plot OUT.png]
    python -m benchmarks.zero_downtime --quick ...     # smoke run

Two real servers, each serving a route whose code the fix changes and keeping in-memory
state (a per-process hit counter):

* ``flask-gunicorn``: Flask under gunicorn, 4 sync workers (forked, no ``--preload``);
* ``fastapi-uvicorn``: FastAPI under uvicorn, 2 workers (spawned by its process manager).

Every server runs under ``suture run`` (the agent loaded, the same for every method) on
loopback. For each server and each of three ways to get the fix in, a fresh server and a
load generator (loadgen.py: open loop, latency from the scheduled time) at a steady rate;
the operation starts ``warmup + steady_windows * window`` (+0.25) seconds after the load's
schedule starts:

1. ``suture``: ``suture apply`` of the signed patch to the master and every worker;
2. ``reload``: the fixed file is written over the app, then the server's graceful reload:
   SIGHUP to gunicorn's master (new workers, old ones finish their requests), or to
   uvicorn's process manager (one worker at a time: a new one up, then the old one
   retired; uvicorn has this only with ``--workers``, hence 2 workers for every method);
3. ``restart``: the fixed file is written, the server is stopped (SIGTERM, waited for)
   and started again; the operation ends when it answers;
4. ``control`` (only if asked for in ``--methods``): ``suture --version`` runs and nothing
   changes: what a process starting beside the server costs its latency on a small
   machine (the CLI of ``suture`` competes for the same CPUs as the server and the load).

``--rounds`` repeats all of it, every server and method once per round, the order of the
servers and of the methods rotating from round to round (interleaved).

Definitions (issue 19: equal windows, the warm-up excluded):

* **window**: the requests *scheduled* in the ``--window`` seconds from the operation's
  start. **Steady**: ``--steady-windows`` windows of the same length right before the
  operation, none in the load's first ``--warmup`` seconds (connections opening). The
  schedule is open loop at a fixed rate, so every window holds the same number of
  requests (rate × window: 1,200 by default) and a percentile is the same order statistic
  in each. Each steady statistic is the median over the steady windows.
* **percentiles**: nearest rank over the answered requests' latencies (from the
  scheduled time); failed requests are counted apart. With n = 1,200, p99.9 is the
  second-largest latency and p99 the 13th-largest; ``max`` is reported apart.
* **ratio**: window / steady, for p50, p99, p99.9, max and the longest gap.
* **stall**: the window's largest latency minus steady state's p50: how much later than
  usual the worst-served request was answered (``steady_stall_ms``: the same for the
  steady windows, for scale; ``stall_over_steady_max_ms``: the window's largest latency
  minus steady state's largest, tolerant of a noisy machine, not the target's measure).
  **Longest gap**: the longest time within a window in which
  no answer arrived on any connection (an outage of the whole server).
* **targets**, per run: no failed request in the run; window p99.9 at most 1.2× steady;
  stall at most 10 ms. The summary counts the runs that met each.
* also per run, as before: the throughput dip (the emptiest 100 ms of the operation
  against the steady rate), the time from the operation's start until every request that
  starts later gets the fixed behaviour, whether the in-memory state survived (every
  answer after the operation comes from a process that answered before it, with its hit
  counter still counting up), and ``operation``: the statistics of the whole operation
  (until fixed or done, plus 1 s), whose length differs per method (context only).
  ``window_covers_op`` says whether the operation fitted in the window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks._provenance import git_state
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
# "control" (opt-in, --methods): the CLI starts and exits beside the server and changes
# nothing; what a process starting on a small machine costs the server's latency by itself
ALL_METHODS = (*METHODS, "control")


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

def scenario(name: str, method: str, work: Path, cfg: argparse.Namespace, round_: int,
             keep_series: bool) -> Dict[str, Any]:
    host = Host(name, work / f"{name}-{method}-r{round_}")
    port = free_port()
    proc, pids = host.start(port)
    rows_file, started = host.root / "rows.jsonl", host.root / "load-started"
    until = host.root / "load-until"
    before = cfg.warmup + cfg.steady_windows * cfg.window + 0.25
    # the schedule ends --seconds-after after the operation *ended* (a restart on a busy
    # machine can take many seconds; state is judged from the requests after it); the
    # cap only bounds a run whose driver died
    load = subprocess.Popen([sys.executable, "-m", "benchmarks.zero_downtime.loadgen",
                             "--port", str(port), "--rate", str(cfg.rate), "--conns",
                             str(cfg.conns), "--seconds", str(before + cfg.seconds_after + 600),
                             "--out", str(rows_file), "--started", str(started),
                             "--until", str(until)],
                            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    procs = [proc]
    info: Dict[str, Any] = {"server": name, "method": method, "round": round_,
                            "pids_before": pids}
    try:
        t_load = float(wait(lambda: started.exists() and started.read_text(), "the load"))
        time.sleep(max(0.0, t_load + before - time.monotonic()))
        t_op = time.monotonic()
        if method == "suture":
            rc, out = host.suture("apply", str(host.patch), *[a for p in pids
                                                               for a in ("--pid", str(p))])
            info["apply"] = {"rc": rc, "outcomes": [r["outcome"] for r in
                                                    out.get("processes", [])],
                             "pause_us": [round(r["result"].get("pause_ns", 0) / 1e3, 1)
                                          for r in out.get("processes", [])
                                          if r.get("result")]}
        elif method == "control":
            out_ = subprocess.run([sys.executable, "-m", "suture", "--version"], env=host.env,
                                  capture_output=True, text=True, timeout=120)
            info["control"] = {"rc": out_.returncode}
        elif method == "reload":
            host.deploy_fix()
            os.kill(proc.pid, signal.SIGHUP)   # gunicorn and uvicorn: replace the workers
        else:
            host.deploy_fix()
            stop(proc)
            proc, _ = host.start(port)
            procs.append(proc)
        t_done = time.monotonic()
        end = max(t_op + cfg.window, t_done) + cfg.seconds_after
        until.with_suffix(".tmp").write_text(repr(end))
        os.replace(until.with_suffix(".tmp"), until)
        load.wait(timeout=end - time.monotonic() + 120)
    finally:
        for p in procs:
            stop(p)
        if load.poll() is None:
            load.kill()
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    info.update(measure(rows, t_load, t_op, t_done, cfg.warmup, cfg.window,
                        cfg.steady_windows))
    shutil.rmtree(host.root, ignore_errors=True)
    if keep_series:
        info["series"] = [(round(r["s"] - t_op, 4), round((r["t1"] - r["s"]) * 1e3, 3),
                           0 if r.get("error") else int(r.get("v") or 0)) for r in rows]
    return info


# ---------------------------------------------------------------- measures

def pct(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def window_stats(rows: List[Dict[str, Any]], a: float, b: float) -> Dict[str, Any]:
    """The requests *scheduled* in [a, b): with an open-loop schedule, two windows of the
    same length hold the same number of requests, so their percentiles are the same order
    statistics. Latencies count answered requests; failed ones are counted apart."""
    rs = [r for r in rows if a <= r["s"] < b]
    ms = sorted((r["t1"] - r["s"]) * 1e3 for r in rs if not r.get("error"))
    # the longest time within [a, b) in which no answer arrived (any connection)
    t1 = sorted(r["t1"] for r in rows if not r.get("error") and a <= r["t1"] < b)
    edges = [a, *t1, b]
    gap = max((y - x for x, y in zip(edges, edges[1:])), default=b - a)
    return {"n": len(rs), "failed": sum(1 for r in rs if r.get("error")),
            "p50": round(pct(ms, 0.50), 3), "p99": round(pct(ms, 0.99), 3),
            "p99.9": round(pct(ms, 0.999), 3), "max": round(ms[-1], 3) if ms else None,
            "longest_gap": round(gap * 1e3, 3)}


STATS = ("p50", "p99", "p99.9", "max", "longest_gap")


def measure(rows: List[Dict[str, Any]], t_load: float, t_op: float, t_done: float,
            warmup: float, length: float, k: int) -> Dict[str, Any]:
    """The window: ``length`` seconds of schedule from the operation's start. Steady state:
    ``k`` windows of the same length just before it, all after the load's first ``warmup``
    seconds (connections opening); each statistic of steady state is the median of the
    ``k`` windows' values."""
    window = window_stats(rows, t_op, t_op + length)
    steadies = [window_stats(rows, t_op - j * length, t_op - (j - 1) * length)
                for j in range(1, k + 1)]
    if t_op - k * length < t_load + warmup - 1e-6:
        raise RuntimeError("the steady windows reach into the load's warm-up")
    steady: Dict[str, Any] = {s: round(statistics.median(w[s] for w in steadies), 3)
                              for s in STATS}
    steady.update(n=steadies[0]["n"], failed=sum(w["failed"] for w in steadies),
                  windows=steadies)
    ratio = {s: (round(window[s] / steady[s], 3) if window[s] and steady[s] else None)
             for s in STATS}
    # stall: how much later than steady state's median the slowest request of the window
    # was answered; the same for each steady window, for scale
    stall = round(window["max"] - steady["p50"], 3) if window["max"] is not None else None
    steady_stall = round(statistics.median(w["max"] - steady["p50"] for w in steadies
                                           if w["max"] is not None), 3)

    bad_after = [r["t0"] for r in rows if r["t0"] >= t_op and (r.get("error")
                                                               or r.get("v") != 2)]
    fixed_at = (max(bad_after) - t_op) if bad_after else 0.0
    any_fixed = any(r.get("v") == 2 for r in rows)
    # the whole operation (as issue 6 measured it): until fixed or done, plus 1 s; its
    # length differs per method, so it is context, not the comparison
    end_op = t_op + max(fixed_at, t_done - t_op) + 1.0
    operation = window_stats(rows, t_op, end_op)
    steady_rate = steadies[0]["n"] / length
    buckets: Dict[int, int] = {}
    for r in rows:
        if t_op <= r["t1"] < end_op and not r.get("error"):
            b = int((r["t1"] - t_op) / 0.1)
            buckets[b] = buckets.get(b, 0) + 1
    n_buckets = max(1, int((end_op - t_op) / 0.1))
    low = min(buckets.get(i, 0) for i in range(n_buckets)) * 10.0
    # State: every answer after the operation from a process seen before it, counting on.
    before_pids: Dict[int, int] = {}
    for r in rows:
        if r["t1"] < t_op and r.get("pid"):
            before_pids[r["pid"]] = max(before_pids.get(r["pid"], 0), r["hits"])
    later = [r for r in rows if r["t0"] > end_op and r.get("pid")]
    new_pids = sorted({r["pid"] for r in later} - set(before_pids))
    reset = sorted({r["pid"] for r in later if r["pid"] in before_pids
                    and r["hits"] <= before_pids[r["pid"]]})
    failed = sum(1 for r in rows if r.get("error"))
    return {
        "requests": len(rows),
        "failed": failed,
        "failed_in_window": window["failed"],
        "errors": sorted({r["error"].split(":")[0] for r in rows if r.get("error")}),
        "op_seconds": round(t_done - t_op, 3),
        "fixed_after_s": round(fixed_at, 3) if any_fixed else None,
        "window_s": length,
        # the operation (and its fix reaching every request) lies inside the window
        "window_covers_op": bool(any_fixed and max(fixed_at, t_done - t_op) < length),
        "window": window, "steady": steady, "ratio": ratio,
        "stall_ms": stall, "steady_stall_ms": steady_stall,
        # the same largest latency against steady state's largest (same n): what the
        # operation added beyond the worst request of a steady window; noise-tolerant,
        # so not the target's measure
        "stall_over_steady_max_ms": (round(window["max"] - steady["max"], 3)
                                     if window["max"] is not None and steady["max"] is not None
                                     else None),
        "gap_excess_ms": round(window["longest_gap"] - steady["longest_gap"], 3),
        "operation": operation,
        "steady_rate": round(steady_rate, 1),
        "dip_pct": round(100.0 * max(0.0, 1 - low / steady_rate), 1) if steady_rate else None,
        # None: no request after the window to tell (a run too short for the operation)
        "state_survived": (not new_pids and not reset) if later else None,
        "new_pids_after": new_pids,
        "targets": {"no_failed": failed == 0,
                    "p99.9_ratio": ratio["p99.9"] is not None
                    and ratio["p99.9"] <= P999_RATIO_TARGET,
                    "stall": stall is not None and stall <= STALL_TARGET_MS},
    }


P999_RATIO_TARGET = 1.2
STALL_TARGET_MS = 10.0


def spread(values: Sequence[Optional[float]]) -> Dict[str, Any]:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(v), "median": round(statistics.median(v), 3), "min": v[0],
            "max": v[-1]}


def summarize(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per server and method, over the rounds: median, min, max, and targets met."""
    out = []
    keys = list(dict.fromkeys((r["server"], r["method"]) for r in results))
    for server, method in keys:
        rs = [r for r in results if r["server"] == server and r["method"] == method]
        row: Dict[str, Any] = {"server": server, "method": method, "runs": len(rs)}
        row["failed"] = spread([r["failed"] for r in rs])
        for part in ("window", "steady"):
            row[part] = {s: spread([r[part][s] for r in rs]) for s in STATS}
        row["n_window"] = spread([r["window"]["n"] for r in rs])
        row["ratio"] = {s: spread([r["ratio"][s] for r in rs]) for s in STATS}
        for key in ("stall_ms", "steady_stall_ms", "stall_over_steady_max_ms", "gap_excess_ms",
                    "op_seconds",
                    "fixed_after_s", "dip_pct"):
            row[key] = spread([r[key] for r in rs])
        row["state_kept_runs"] = sum(1 for r in rs if r["state_survived"])
        row["state_judged_runs"] = sum(1 for r in rs if r["state_survived"] is not None)
        row["window_covers_op_runs"] = sum(1 for r in rs if r["window_covers_op"])
        row["targets_met"] = {t: sum(1 for r in rs if r["targets"][t])
                              for t in rs[0]["targets"]}
        out.append(row)
    return out


# ---------------------------------------------------------------- output

def _sp(s: Dict[str, Any], fmt: str = "{:.1f}") -> str:
    if not s["n"]:
        return "–"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def markdown(summary: List[Dict[str, Any]]) -> str:
    lines = ["Each cell: median (min–max) over the runs; targets: runs that met it.", "",
             "| server | method | runs | failed | p99 ms window / steady | p99.9 ms window / "
             "steady | max ms window / steady | p99.9 ratio | stall ms (steady's) | "
             "longest gap ms | fixed after s | state kept | met: 0 failed / p99.9 ≤ 1.2× / "
             "stall ≤ 10 ms |",
             "| --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | "
             "--- |"]
    for r in summary:
        w, s, n = r["window"], r["steady"], r["runs"]
        t = r["targets_met"]
        lines.append(
            f"| {r['server']} | {r['method']} | {n} | {_sp(r['failed'], '{:.0f}')} | "
            f"{_sp(w['p99'])} / {_sp(s['p99'])} | {_sp(w['p99.9'])} / {_sp(s['p99.9'])} | "
            f"{_sp(w['max'])} / {_sp(s['max'])} | {_sp(r['ratio']['p99.9'], '{:.2f}')}× | "
            f"{_sp(r['stall_ms'])} ({_sp(r['steady_stall_ms'])}) | "
            f"{_sp(w['longest_gap'])} | {_sp(r['fixed_after_s'], '{:.2f}')} | "
            f"{r['state_kept_runs']}/{r['state_judged_runs'] or '–'} | {t['no_failed']}/{n} / {t['p99.9_ratio']}/{n} / "
            f"{t['stall']}/{n} |")
    return "\n".join(lines) + "\n"


def plot(results: List[Dict[str, Any]], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(r["server"] for r in results))
    methods = [m for m in ALL_METHODS if any(r["method"] == m for r in results)]
    fig, axes = plt.subplots(len(servers), len(methods), figsize=(15, 4.2 * len(servers)),
                             sharey=True, squeeze=False)
    for r in results:
        ax = axes[servers.index(r["server"])][methods.index(r["method"])]
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
            "kernel": platform.release(), "loadavg": os.getloadavg(),
            **git_state(ROOT)}


def use_this_checkout() -> None:
    """Build and sign with this checkout's ``src`` (the servers and the CLI run it too):
    an installed or ``.pth``-linked suture elsewhere would build a patch for another
    engine."""
    if sys.path[:1] != [str(SRC)]:
        sys.path.insert(0, str(SRC))
    for name in [m for m in sys.modules if m == "suture" or m.startswith("suture.")]:
        if not (getattr(sys.modules[name], "__file__", None) or "").startswith(str(SRC)):
            raise SystemExit(f"{name} was imported from elsewhere before the benchmark ran")


def main(argv: Optional[List[str]] = None) -> int:
    use_this_checkout()
    # SIGTERM (a job killed from outside) unwinds like ^C: servers stopped, files removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(prog="python -m benchmarks.zero_downtime",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"of {','.join(ALL_METHODS)} (control: `suture --version` only)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="every server and method once per round, the order rotating")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds of load at the start that no window uses")
    ap.add_argument("--window", type=float, default=3.0,
                    help="seconds of schedule in the window and in each steady window")
    ap.add_argument("--steady-windows", type=int, default=3,
                    help="steady windows before the operation (their median is 'steady')")
    ap.add_argument("--seconds-after", type=float, default=10.0,
                    help="load after the window or the operation, whichever ends later")
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 0.5 s warm-up, one 1 s steady window, 100/s")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="latency over time, round 1")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.warmup, a.window, a.steady_windows, a.rate = 1, 0.5, 1.0, 1, 100.0
    servers, methods = a.servers.split(","), a.methods.split(",")
    work = Path(tempfile.mkdtemp(prefix="suture-zd-"))
    results = []
    try:
        for k in range(a.rounds):
            for name in servers[k % len(servers):] + servers[:k % len(servers)]:
                for method in methods[k % len(methods):] + methods[:k % len(methods)]:
                    r = scenario(name, method, work, a, k, keep_series=k == 0)
                    results.append(r)
                    print(f"round {k} {name:16} {method:8} failed {r['failed']:5}  p99.9 "
                          f"{r['window']['p99.9']:8} ms / steady {r['steady']['p99.9']} ms "
                          f"(x{r['ratio']['p99.9']})  stall {r['stall_ms']} ms  fixed after "
                          f"{r['fixed_after_s']} s  state kept {r['state_survived']}",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    table = markdown(summary)
    print("\n" + table)
    if a.json:
        a.json.write_text(json.dumps({
            "machine": machine(), "rate": a.rate, "conns": a.conns, "rounds": a.rounds,
            "warmup_s": a.warmup, "window_s": a.window, "steady_windows": a.steady_windows,
            "seconds_after": a.seconds_after,
            "targets": {"no_failed": 0, "p99.9_ratio": P999_RATIO_TARGET,
                        "stall_ms": STALL_TARGET_MS},
            "summary": summary, "results": results}, indent=1) + "\n")
    if a.markdown:
        a.markdown.write_text(table)
    if a.plot:
        plot([r for r in results if "series" in r], a.plot)
    return 0
