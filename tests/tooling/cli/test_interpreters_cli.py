"""Issue 22 through the real CLI: a real process whose sub-interpreter its agent cannot
reach (it runs code, so no agent can be started in it) is refused an apply (SUT-E219),
reported exposed by `suture status` with the interpreter named, counted by `suture
metrics`, and `suture ps` shows its two interpreters. Never `fixed`.

Runs wherever the runtime fans out to interpreters (its `hello` says `interpreters`);
the per-interpreter apply/revert tests with real sub-interpreters are in
tests/agent/test_interpreters.py.
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
from suture.tooling.host import client

pytestmark = pytest.mark.slow

dists, rundir, state = livecli.dists, livecli.rundir, livecli.state

# One sub-interpreter, and ``run(code)`` to run code in it (3.13+, 3.12).
MAKE_SUB = """\
try:
    import _interpreters as I
    iid = I.create()
    run = lambda code: I.exec(iid, code)
except ImportError:
    import _xxsubinterpreters as I
    iid = I.create()
    run = lambda code: I.run_string(iid, code)
"""

# The main interpreter imports the vulnerable release and starts the agent; a
# sub-interpreter runs a loop on a thread, so the agent cannot start one in it.
BUSY_SUB = """\
import os, sys, threading, time
sys.path.insert(0, {root!r})
from {pkg} import answer
import suture.agent
suture.agent.start()
""" + MAKE_SUB + """threading.Thread(target=run, args=("import time\\nwhile True: time.sleep(0.05)",),
                 daemon=True).start()
out = {out!r}
while True:
    with open(out + ".tmp", "w") as f:
        f.write(answer())
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""


def _has_subinterpreters() -> bool:
    try:
        import _interpreters  # noqa: F401
    except ImportError:
        try:
            import _xxsubinterpreters  # noqa: F401
        except ImportError:
            return False
    return True


@pytest.fixture
def busy_sub(rundir: str, tmp_path: Path) -> Iterator[Target]:
    if not _has_subinterpreters():
        pytest.skip("no low-level interpreters module in this Python")
    procs: List[subprocess.Popen] = []
    out = tmp_path / "observed.txt"

    def start(root: Path) -> Target:
        script = BUSY_SUB.format(root=str(root), pkg=PKG, out=str(out))
        env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return livecli.ready(proc, Target(proc, out), rundir)  # type: ignore[no-any-return]

    with livecli.host_lock():
        try:
            yield start  # type: ignore[misc]
        finally:
            livecli.reap(procs)


def test_an_unreachable_sub_interpreter_is_refused_and_reported_exposed(
        dists: Dict[str, Path], rundir: str, state: Path, busy_sub: object) -> None:
    fix, fid = dists["fix"], patch_id(dists["fix"])
    target = busy_sub(dists["1.0"])   # type: ignore[operator]
    assert client.hello(target.pid, 5.0, runtime_dir=rundir)["interpreters"] == 2

    out = cli(rundir, "ps", "--json")
    [row] = [p for p in json.loads(out.stdout)["processes"] if p["pid"] == target.pid]
    assert row["interpreters"] == 2, row

    # apply: all or nothing per process; the busy interpreter refuses it for all
    out = cli(rundir, "apply", str(fix), "--pid", str(target.pid), "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    [row] = json.loads(out.stdout)["processes"]
    assert (row["outcome"], row["code"]) == ("refused", "SUT-E219"), row
    assert [i["id"] for i in row["interpreters"]][:1] == [0], row
    assert any(i["state"] == "unreachable" for i in row["interpreters"]), row
    assert target.observed() == "old"

    # status: exposed, the interpreter named, never fixed
    assert cli(rundir, "install", str(fix)).returncode == 0
    out = cli(rundir, "status", "--pid", str(target.pid), "--json", "--advisories", "off")
    assert out.returncode == 2, out.stdout + out.stderr
    report = json.loads(out.stdout)
    [proc] = report["processes"]
    assert proc["state"] == "exposed" and proc["interpreter_count"] == 2, proc
    [hidden] = proc["uninspectable"]
    [entry] = [e for e in report["patches"] if e["id"] == fid]
    [verdict] = entry["processes"]
    assert verdict["state"] == "exposed" and verdict["uninspectable"] == [hidden["interpreter"]]
    assert f"not fully inspectable: interpreter {hidden['interpreter']}" in verdict["reason"]
    assert any(x.get("interpreter") == hidden["interpreter"] and x["patch"] == fid
               for x in report["exposed"]), report["exposed"]

    text = cli(rundir, "status", "--pid", str(target.pid), "--advisories", "off")
    assert text.returncode == 2
    assert "not fully inspectable (counted as exposed):" in text.stdout, text.stdout
    assert "fixed" not in text.stdout.split("EXPOSED:")[0].replace("fixed release", "")

    out = cli(rundir, "metrics")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "suture_uninspectable_interpreters 1" in lines
    assert 'suture_processes{state="exposed"} 1' in lines


# The vulnerable release is only on a sub-interpreter's own sys.path; the main interpreter
# never sees the distribution. Under `suture run`, so the sub-interpreter has its agent.
ONLY_IN_SUB = """\
import os, sys, time
""" + MAKE_SUB + """run("import sys\\nsys.path.insert(0, {root!r})\\nfrom {pkg} import answer")
out = {out!r}
while True:
    run("import os\\nwith open({out!r} + '.tmp', 'w') as f:\\n    f.write(answer())\\n"
        "os.replace({out!r} + '.tmp', {out!r})")
    time.sleep(0.02)
"""


def test_a_release_only_a_sub_interpreter_runs_is_exposed_and_patched_by_apply_all(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path) -> None:
    # A user's attack: status said "not affected: not installed here" and `apply --all`
    # skipped the process, judging by the main interpreter's sys.path alone.
    if not _has_subinterpreters():
        pytest.skip("no low-level interpreters module in this Python")
    fix, fid = dists["fix"], patch_id(dists["fix"])
    out = tmp_path / "observed.txt"
    script = tmp_path / "only_in_sub.py"
    script.write_text(ONLY_IN_SUB.format(root=str(dists["1.0"]), pkg=PKG, out=str(out)),
                      encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SUTURE_AGENT")}
    env.update(PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
    with livecli.host_lock():
        _only_in_sub(script, env, out, rundir, fix, fid)


def _only_in_sub(script: Path, env: Dict[str, str], out: Path, rundir: str, fix: Path,
                 fid: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "suture", "run", "--", sys.executable,
                             str(script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        target = livecli.ready(proc, Target(proc, out), rundir)
        target.wait_for("old")
        assert cli(rundir, "install", str(fix)).returncode == 0
        out_ = cli(rundir, "status", "--pid", str(target.pid), "--json", "--advisories", "off")
        assert out_.returncode == 2, out_.stdout + out_.stderr
        report = json.loads(out_.stdout)
        [entry] = [e for e in report["patches"] if e["id"] == fid]
        if sys.version_info < (3, 12):
            # _xxsubinterpreters makes isolated interpreters that allow no thread: no agent
            # there, so it is named, and nothing is said of the patch but "unknown".
            [proc_row] = report["processes"]
            assert [u["interpreter"] for u in proc_row["uninspectable"]] == [1], proc_row
            assert [(p["pid"], p["state"]) for p in entry["processes"]] == \
                [(target.pid, "unknown")]
            return
        assert [(p["pid"], p["state"]) for p in entry["processes"]] == [(target.pid, "exposed")]

        out_ = cli(rundir, "apply", str(fix), "--all", "--json")
        rows = [r for r in json.loads(out_.stdout)["processes"] if r["pid"] == target.pid]
        assert [r["outcome"] for r in rows] in (["applied"], ["pending import"]), out_.stdout
        target.wait_for("new")
        out_ = cli(rundir, "status", "--pid", str(target.pid), "--json", "--advisories", "off")
        assert out_.returncode == 0, out_.stdout + out_.stderr
    finally:
        livecli.reap([proc])
