"""Issue 17: a free-threaded build (3.13t/3.14t) is refused (SUT-E218), never patched.

No free-threaded interpreter can be had on the test machines, so the target is a real GIL
process whose runtime is made to see a free-threaded build through its one seam,
``suture.runtime._freethreaded.probe``, replaced by the target's own code before its agent
starts (docs/engine.md, "Free-threaded builds"). Everything else is real: the agent, its
socket, the patch store, the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import livecli
from livecli import PKG, SRC, Target, cli, patch_id
from suture.runtime import store

pytestmark = pytest.mark.slow

dists, rundir, state = livecli.dists, livecli.rundir, livecli.state

# What the seam answers in the target: the GIL disabled, or enabled at run time (which a
# free-threaded build may turn off again: refused too).
SIMULATED = """\
import os, sys, time
sys.path.insert(0, {root!r})
from {pkg} import answer
import suture.runtime._freethreaded as ft
ft.probe = lambda: {{"free_threaded": True, "gil_enabled": {gil}}}
import suture.agent
suture.agent.start()
out = {out!r}
while True:
    value = answer()
    with open(out + ".tmp", "w") as f:
        f.write(value)
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""


@pytest.fixture
def start_free_threaded(rundir: str, tmp_path: Path) -> Iterator[object]:
    procs: List[subprocess.Popen] = []

    def start(root: Path, gil: bool = False) -> Target:
        out = tmp_path / f"observed-{len(procs)}.txt"
        script = SIMULATED.format(root=str(root), pkg=PKG, gil=gil, out=str(out))
        env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return livecli.ready(proc, Target(proc, out), rundir)  # type: ignore[no-any-return]

    with livecli.host_lock():
        try:
            yield start
        finally:
            livecli.reap(procs)


def test_apply_is_refused_and_status_reports_the_process_exposed_with_the_reason(
        dists: Dict[str, Path], rundir: str, state: Path, start_free_threaded: object) -> None:
    fix, fid = dists["fix"], patch_id(dists["fix"])
    assert cli(rundir, "install", str(fix)).returncode == 0
    # Started after the install: its agent applies the store at start, and is refused.
    target = start_free_threaded(dists["1.0"])   # type: ignore[operator]
    assert target.observed() == "old"

    out = cli(rundir, "apply", str(fix), "--pid", str(target.pid), "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    [row] = json.loads(out.stdout)["processes"]
    assert (row["outcome"], row["code"]) == ("refused", "SUT-E218"), row
    assert "free-threaded build" in row["reason"] and "Nothing was changed" in row["reason"]
    assert target.observed() == "old" and target.proc.poll() is None

    out = cli(rundir, "status", "--pid", str(target.pid), "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    [proc] = json.loads(out.stdout)["processes"]
    assert proc["state"] == "exposed" and proc["applied"] == []
    assert proc["unpatchable"]["code"] == "SUT-E218"
    assert proc["unpatchable"]["gil_enabled"] is False
    [exposed] = proc["exposed"]
    assert exposed["patch"] == fid
    assert exposed["reason"] == (f"runs {PKG} 1.0 (imported) without this patch; cannot be "
                                 "patched here (SUT-E218): free-threaded build")
    assert exposed["fix"].startswith(f"restart PID {target.pid} ")
    text = cli(rundir, "status", "--pid", str(target.pid))
    assert text.returncode == 2 and "free-threaded build" in text.stdout, text.stdout

    out = cli(rundir, "ps", "--json")
    [mine] = [p for p in json.loads(out.stdout)["processes"] if p["pid"] == target.pid]
    assert mine["agent"] is True and mine["hello"]["free_threaded"] is True
    text = cli(rundir, "ps")
    assert "free-threaded build: its agent refuses every apply (SUT-E218" in text.stdout

    # The agent's own audit log: the apply at start (its crash-loop trace first) and the one
    # by hand, both refused.
    rows = [r for r in store.audit_log() if r["pid"] == target.pid]
    assert [(r["op"], r["result"]) for r in rows] == [
        ("auto-apply", "applying"), ("auto-apply", "refused SUT-E218"),
        ("apply", "refused SUT-E218")], rows
    assert target.observed() == "old"


def test_a_gil_enabled_at_run_time_is_refused_too(
        dists: Dict[str, Path], rundir: str, state: Path, start_free_threaded: object) -> None:
    target = start_free_threaded(dists["1.0"], gil=True)   # type: ignore[operator]
    out = cli(rundir, "apply", str(dists["fix"]), "--pid", str(target.pid), "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    [row] = json.loads(out.stdout)["processes"]
    assert row["code"] == "SUT-E218" and "GIL is enabled at the moment" in row["reason"]
    assert target.observed() == "old"
