"""Where an apply spends its time inside a server process, and how long it stops others.

    python -m benchmarks.zero_downtime.apply_profile [--server flask-gunicorn] [--runs 5]

Imports the benchmark's app (v1) in this process, then applies the v1 -> v2 patch on a
second thread (as the agent does) while the main thread spins and stamps the clock: the
longest gap between two stamps is the longest time the application's thread could not
run. Each run is a fresh process (one apply each); the last run is also profiled
(cProfile, by own time). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from .bench import ROOT, SERVERS, SRC, fixed, use_this_checkout

CHILD = r'''
import cProfile, gc, io, json, pstats, sys, threading, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import zdapp.web
from suture import runtime
data = open(sys.argv[3], "rb").read()
profile = sys.argv[4] == "1"
stamps = []
done = threading.Event()
out = {"objects": len(gc.get_objects())}

spinning = threading.Event()

def agent():
    spinning.wait()
    pr = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if pr: pr.enable()
    res = runtime.apply(data)
    if pr: pr.disable()
    out.update(apply_ms=round((time.perf_counter() - t0) * 1e3, 2), state=res.state,
               pause_us=round(res.pause_ns / 1e3, 1))
    if pr:
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
        out["profile"] = s.getvalue().splitlines()[-14:]
    done.set()

last = time.perf_counter()
gaps = []
t = threading.Thread(target=agent)
t.start()
spinning.set()
while not done.is_set():
    now = time.perf_counter()
    gaps.append(now - last)
    last = now
gaps.append(time.perf_counter() - last)
out["max_gap_ms"] = round(max(gaps) * 1e3, 2)
print(json.dumps(out))
'''


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="flask-gunicorn", choices=sorted(SERVERS))
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    use_this_checkout()
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        src = SERVERS[a.server]["src"]
        for tag, text in (("v1", src), ("v2", fixed(src))):
            (root / tag / "zdapp").mkdir(parents=True)
            (root / tag / "zdapp" / "__init__.py").write_text("")
            (root / tag / "zdapp" / "web.py").write_text(text)
        report = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")))
        assert report.data is not None
        (root / "p.suture").write_bytes(report.data)
        runs: List[Dict[str, Any]] = []
        for i in range(a.runs):
            done = subprocess.run([sys.executable, "-c", CHILD, str(SRC), str(root / "v1"),
                                   str(root / "p.suture"), "1" if i == a.runs - 1 else "0"],
                                  capture_output=True, text=True, timeout=120,
                                  env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
                                  cwd=str(ROOT))
            if done.returncode:
                raise SystemExit(done.stderr)
            runs.append(json.loads(done.stdout))
    plain = [r for r in runs if "profile" not in r] or runs
    print(json.dumps({"server": a.server, "python": sys.version.split()[0],
                      "apply_ms": sorted(r["apply_ms"] for r in plain),
                      "max_gap_ms": sorted(r["max_gap_ms"] for r in plain),
                      "objects": runs[0]["objects"], "profile": runs[-1]["profile"]},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
