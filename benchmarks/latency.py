#!/usr/bin/env python3
"""How long the `suture` command takes, as a user runs it: interpreter start-up included.

    PYTHONPATH=src python3 benchmarks/latency.py [--rounds 10] [--json] [--out FILE]
                                                 [--instructions] [--quick]

One target process with the agent (it imports a one-function module ``tiny.calc``, of a
distribution ``tiny`` 1.0 installed with metadata) and a small signed patch of that
function, built as from tiny 1.0 to 1.1 (a distribution patch, as a CVE fix is: the CLI
checks the patch's modules against its own environment's copy, and asks the agent which
release it runs before sending it), trusted by a policy in a private config directory.
Each round runs, as subprocesses and in this order:

* ``python -c pass``: the interpreter's own start-up (the floor of every command);
* ``suture --version``;
* ``suture ps``;
* ``suture apply FILE --pid N`` (the signature is checked; the target is sent the patch);
* ``suture status --pid N --advisories off`` (no network: the local work only);
* ``suture revert ID --pid N`` (so that every round's apply applies afresh).

Every command's exit code and outcome are checked. Per command: the median, min and max
wall time over the rounds (ms), and the same of its CPU time (user + system, from
``getrusage`` of the child: what a loaded machine inflates least, as waiting for a CPU is
not counted). The commands of one round run back to back, so a loaded machine slows all
of them alike. Then, once each: ``suture apply`` under
``-X importtime`` (the modules it imports, the costliest first), and with
``--instructions`` every command under ``valgrind --tool=callgrind`` (CPU instructions: a
number a loaded machine does not change).

The command is run as the installed console script runs it (``from
suture.tooling.cli import main; main()``), with the source tree's bytecode compiled first
(``compileall``, as an installed wheel has it); ``--no-compile`` skips that. ``--src DIR``
times the commands of another source tree (an older commit's ``src``, from ``git
archive``), with this tree's builder making the patch: a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import _provenance  # benchmarks/_provenance.py (this script's directory)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path[:0] = [str(SRC)]

TARGET = r'''
import sys
import suture.agent
suture.agent.start()
import tiny.calc
print("ready", flush=True)
sys.stdin.read()
'''

# What the console script `suture` (pyproject's [project.scripts]) runs.
ENTRY = "import sys; from suture.tooling.cli import main; sys.exit(main())"


def tree(root: Path, body: str, version: str) -> Path:
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text("")
    (root / "tiny" / "calc.py").write_text(f"def value():\n    return {body}\n")
    info = root / f"tiny-{version}.dist-info"   # what the agent's `dists` answer reads
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tiny\nVersion: {version}\n")
    (info / "top_level.txt").write_text("tiny\n")
    return root


def summary(ms: Sequence[float]) -> Dict[str, Any]:
    s = sorted(ms)
    return {"median": round(statistics.median(s), 1), "min": round(s[0], 1),
            "max": round(s[-1], 1), "n": len(s)}


class Bench:
    def __init__(self, work: Path, src: Path = SRC) -> None:
        from dataclasses import replace

        from suture.tooling import trust
        from suture.tooling.build import build_trees
        from suture.tooling.build.sources import materialize

        report = build_trees(
            replace(materialize(str(tree(work / "v1", "1", "1.0"))), name="tiny", version="1.0"),
            replace(materialize(str(tree(work / "v2", "2", "1.1"))), name="tiny", version="1.1"))
        assert report.data is not None and report.patch is not None
        assert report.target["kind"] == "distribution", report.target
        key, pub, _ = trust.keygen(work / "k", "latency")
        trust.add_key(pub.read_text(), path=str(work / "config" / trust.POLICY_FILE))
        self.file = work / "fix.suture"
        data = report.data
        if src.resolve() != SRC.resolve():
            # Another tree (--src, e.g. a release before the deflated payload): the plain
            # payload, which every Suture reads; this checkout's runs send the deflated one.
            from suture.runtime import patchfile
            data = patchfile.dump(patchfile.load(data), compress=False)
        self.file.write_bytes(trust.sign(data, trust.load_private_key(key)))
        self.patch_id = report.patch.id
        run = work / "run"
        run.mkdir(mode=0o700)
        self.env = dict(os.environ, PYTHONPATH=str(src), SUTURE_RUNTIME_DIR=str(run),
                        SUTURE_STATE_DIR=str(work / "state"),
                        SUTURE_CONFIG_DIR=str(work / "config"))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)   # use the compiled bytecode
        self.env.pop("PYTHONPROFILEIMPORTTIME", None)
        script = work / "target.py"
        script.write_text(TARGET)
        target_env = dict(self.env, PYTHONPATH=os.pathsep.join([str(src), str(work / "v1")]))
        self.target = subprocess.Popen([sys.executable, str(script)], env=target_env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.target.stdout is not None and self.target.stdout.readline() == "ready\n"
        end = time.monotonic() + 60
        while not (run / f"{self.target.pid}.sock").exists():
            if time.monotonic() > end:
                raise RuntimeError("the target's agent did not start")
            time.sleep(0.01)
        pid = str(self.target.pid)
        self.commands: List[Tuple[str, List[str]]] = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("suture --version", self.suture("--version")),
            ("suture ps", self.suture("ps")),
            ("suture apply", self.suture("apply", str(self.file), "--pid", pid)),
            ("suture status", self.suture("status", "--pid", pid, "--advisories", "off")),
            ("suture revert", self.suture("revert", self.patch_id, "--pid", pid)),
        ]

    @staticmethod
    def suture(*args: str) -> List[str]:
        return [sys.executable, "-c", ENTRY, *args]

    def stop(self) -> None:
        self.target.kill()
        self.target.wait()

    def check(self, name: str, done: "subprocess.CompletedProcess[str]") -> None:
        if done.returncode != 0:
            raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr[-2000:]}"
                               f"{done.stdout[-2000:]}")
        if name == "suture apply" and " applied" not in done.stdout:
            raise RuntimeError(f"apply did not apply: {done.stdout}")
        if name == "suture revert" and " reverted" not in done.stdout:
            raise RuntimeError(f"revert did not revert: {done.stdout}")
        if name == "suture status" and "fixed" not in done.stdout:
            raise RuntimeError(f"status does not show the patch: {done.stdout}")

    def rounds(self, n: int) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
        """Wall and CPU milliseconds of each command, ``n`` rounds."""
        wall: Dict[str, List[float]] = {name: [] for name, _ in self.commands}
        cpu: Dict[str, List[float]] = {name: [] for name, _ in self.commands}
        for _ in range(n):
            for name, argv in self.commands:
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                      timeout=120)
                wall[name].append((time.perf_counter() - t0) * 1e3)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1e3)
                self.check(name, done)
        return wall, cpu

    def importtime(self, top: int) -> Dict[str, Any]:
        """``suture apply`` once under -X importtime: the total, and the costliest modules
        by cumulative and by self time (µs; one run, so indicative)."""
        name, argv = self.commands[3]
        done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=self.env,
                              capture_output=True, text=True, timeout=120)
        self.check(name, done)
        self.revert()
        rows = []
        for line in done.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append({"module": m.group(4), "self_us": int(m.group(1)),
                             "cumulative_us": int(m.group(2)), "depth": len(m.group(3)) // 2})
        top_level = [r for r in rows if r["depth"] == 0]
        return {
            "modules": len(rows),
            "total_us": sum(r["cumulative_us"] for r in top_level),
            "top_level": sorted(top_level, key=lambda r: -r["cumulative_us"])[:top],
            "by_cumulative": sorted(rows, key=lambda r: -r["cumulative_us"])[:top],
            "by_self": sorted(rows, key=lambda r: -r["self_us"])[:top],
            "loaded": sorted(r["module"] for r in rows),
        }

    def revert(self) -> None:
        name, argv = self.commands[5]
        self.check(name, subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                        timeout=120))

    def instructions(self) -> Dict[str, Any]:
        """Each command once under callgrind: instructions executed (all of the command's
        process, start-up included; not its children, nor the target's work)."""
        if shutil.which("valgrind") is None:
            return {"skipped": "valgrind is not installed"}
        out: Dict[str, Any] = {}
        for name, argv in self.commands:
            done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                   *argv], env=self.env, capture_output=True, text=True,
                                  timeout=600)
            self.check(name, done)
            m = re.search(r"Collected : (\d+)", done.stderr)
            out[name] = int(m.group(1)) if m else None
        return out


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="two rounds, for the smoke test")
    ap.add_argument("--instructions", action="store_true",
                    help="also count each command's CPU instructions (valgrind)")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not compile the source tree's bytecode first")
    ap.add_argument("--top", type=int, default=15, help="import-time rows to keep")
    ap.add_argument("--src", type=Path, default=SRC,
                    help="the source tree whose commands are timed (default: this one)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--out", help="also write the JSON to this file")
    a = ap.parse_args(argv)
    rounds = 2 if a.quick else a.rounds
    if not a.no_compile:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(a.src)], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))
    with tempfile.TemporaryDirectory(prefix="sut-lat-") as d:
        bench = Bench(Path(d), a.src.resolve())
        try:
            bench.rounds(1)   # warm the page cache; not counted
            wall, cpu = bench.rounds(rounds)
            result: Dict[str, Any] = {
                **_provenance.git_state(ROOT),
                "src": str(a.src),
                "python": platform.python_version(),
                "executable": sys.executable,
                "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
                "bytecode_compiled": not a.no_compile,
                "rounds": rounds,
                "ms": {name: summary(ts) for name, ts in wall.items()},
                "cpu_ms": {name: summary(ts) for name, ts in cpu.items()},
                "importtime_apply": bench.importtime(a.top),
            }
            if a.instructions:
                result["instructions"] = bench.instructions()
        finally:
            bench.stop()
    doc = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(doc + "\n")
    if a.json:
        print(doc)
        return 0
    print(f"Python {result['python']}, commit {result['commit'][:12]}, {rounds} rounds "
          f"(load {result['machine']['load'][0]:.2f})\n")
    print("| command | wall ms median | min | max | CPU ms median | min | max |"
          + (" instructions |" if a.instructions else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if a.instructions else ""))
    for name, s in result["ms"].items():
        ins = result.get("instructions", {}).get(name)
        c = result["cpu_ms"][name]
        print(f"| `{name}` | {s['median']} | {s['min']} | {s['max']} | {c['median']} | "
              f"{c['min']} | {c['max']} |"
              + (f" {ins / 1e6:.0f} M |" if ins else (" - |" if a.instructions else "")))
    imp = result["importtime_apply"]
    print(f"\n`suture apply` imports {imp['modules']} modules, {imp['total_us'] / 1e3:.1f} ms "
          f"(-X importtime, one run); costliest by cumulative time:")
    for r in imp["by_cumulative"]:
        print(f"  {r['cumulative_us'] / 1e3:7.1f} ms  {'  ' * r['depth']}{r['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
