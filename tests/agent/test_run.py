"""`suture run` and the environment opt-in: the agent gets into a program (and its Python
children) through PYTHONPATH + SUTURE_AGENT=1, chains to the user's sitecustomize, and
never breaks the program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suture.runtime import _bootstrap

from agentutil import Targets, result

pytestmark = pytest.mark.slow

APP = r'''
import json, os, subprocess, sys, threading
import sitecustomize
report = {
    "pid": os.getpid(),
    "threads": sorted(t.name for t in threading.enumerate()),
    "custom": os.environ.get("CUSTOM_SITE_RAN"),
    "sitecustomize": getattr(sitecustomize, "__file__", None),
    "suture": sys.modules["suture"].__file__ if "suture" in sys.modules else None,
    "tooling": sorted(m for m in sys.modules if m.startswith(("suture.tooling", "click"))),
}
if "--child" in sys.argv:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    report["child"] = child.pid
print(json.dumps(report), flush=True)
sys.stdin.readline()
if "--child" in sys.argv:
    child.stdin.close()
    child.wait()
sys.exit(7)
'''


def _custom_site(targets: Targets) -> Path:
    custom = targets.root / "custom"
    custom.mkdir()
    (custom / "sitecustomize.py").write_text(
        "import os\nos.environ['CUSTOM_SITE_RAN'] = 'yes'\nMARK = 'user'\n", encoding="utf-8")
    return custom


def test_suture_run_loads_the_agent_chains_sitecustomize_and_keeps_pid_and_exit_code(
        targets: Targets):
    custom = _custom_site(targets)
    app = targets.script(APP)
    cwd = targets.root / "cwd"
    cwd.mkdir()
    proc = targets.start([sys.executable, "-m", "suture", "run", sys.executable, str(app)],
                         targets.env([str(custom)]), cwd=cwd, stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)  # exec kept the pid
    report = json.loads(proc.stdout.readline())
    assert report["pid"] == proc.pid
    assert report["threads"] == ["MainThread", "suture-agent"]
    assert report["custom"] == "yes"  # the user's sitecustomize ran...
    assert report["sitecustomize"] == str(custom / "sitecustomize.py")  # ...and is *the* one
    assert report["suture"].startswith(str(targets.rundir / "bootstrap"))
    assert report["tooling"] == []
    hello = result(path, "hello")
    assert hello["pid"] == proc.pid and hello["argv"] == [str(app)]
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(timeout=30) == 7
    assert proc.stderr.read() == ""
    assert os.listdir(cwd) == []  # nothing written into the application's directory
    assert not os.path.exists(path)


def test_python_children_of_a_suture_run_program_get_their_own_agent(targets: Targets):
    app = targets.script(APP)
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable, str(app),
                          "--child"], targets.env(), stdin=subprocess.PIPE)
    targets.wait_agent(proc.pid, proc)
    report = json.loads(proc.stdout.readline())
    targets.extra_pids.append(report["child"])
    child_sock = targets.wait_agent(report["child"])
    assert result(child_sock, "hello")["pid"] == report["child"]
    proc.stdin.write("\n")
    proc.stdin.close()
    assert proc.wait(timeout=30) == 7


MULTIPROCESSING = r'''
import multiprocessing as mp, os, sys, time

def child(q, stop):
    q.put(os.getpid())
    while not os.path.exists(stop):
        time.sleep(0.01)

if __name__ == "__main__":
    stop = sys.argv[1]
    procs = []
    for method in ("spawn", "forkserver", "fork"):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q, stop))
        p.start()
        print(method, q.get(timeout=60), flush=True)
        procs.append(p)
    for p in procs:
        p.join()
    print("done", [p.exitcode for p in procs], flush=True)
'''


def test_multiprocessing_children_get_an_agent_with_every_start_method(targets: Targets):
    # spawn and forkserver start fresh interpreters (they inherit the environment);
    # fork copies the parent (the agent's at-fork hook starts a new one).
    app = targets.script(MULTIPROCESSING)
    stop = targets.root / "stop"
    proc = targets.start([sys.executable, "-m", "suture", "run", "--", sys.executable,
                          str(app), str(stop)], targets.env())
    targets.wait_agent(proc.pid, proc)
    seen = {}
    for _ in range(3):
        method, pid = proc.stdout.readline().split()
        seen[method] = int(pid)
        targets.extra_pids.append(int(pid))
    assert sorted(seen) == ["fork", "forkserver", "spawn"]
    for method, pid in seen.items():
        sock = targets.wait_agent(pid)
        assert result(sock, "hello")["pid"] == pid, method
    stop.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "done [0, 0, 0]\n" and err == "", (out, err)


def test_suture_run_reports_a_missing_command_like_a_shell(targets: Targets):
    out = subprocess.run([sys.executable, "-m", "suture", "run", "no-such-command-xyz"],
                         env=targets.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 127
    assert out.stderr == "suture run: no-such-command-xyz: command not found\n"


PLAIN = r'''
import json, os, sys, threading
import suture.runtime, suture.agent, suture.runtime._agent, suture.runtime._bootstrap
print(json.dumps({"threads": [t.name for t in threading.enumerate()],
                  "suture": sys.modules["suture"].__file__}))
'''


@pytest.mark.parametrize("bootstrap", [False, True], ids=["plain", "bootstrap-without-opt-in"])
def test_without_suture_agent_1_there_is_no_agent(targets: Targets, bootstrap: bool):
    script = targets.script(PLAIN)
    env = targets.env()
    if bootstrap:
        env["PYTHONPATH"] = _bootstrap.prepare(str(targets.root / "boot")) + os.pathsep \
            + env["PYTHONPATH"]
        env["SUTURE_AGENT"] = "0"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["threads"] == ["MainThread"]
    assert not targets.rundir.exists()


def test_an_agent_that_cannot_start_warns_once_and_the_program_runs(targets: Targets):
    boot = _bootstrap.prepare(str(targets.root / "boot"))
    blocker = targets.root / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    env = targets.env(SUTURE_AGENT="1", SUTURE_RUNTIME_DIR=str(blocker / "run"))
    env["PYTHONPATH"] = boot + os.pathsep + env["PYTHONPATH"]
    out = subprocess.run([sys.executable, "-c", "print('app ran'); raise SystemExit(5)"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 5 and out.stdout == "app ran\n"
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("suture: warning: agent not started in pid ")


def test_prepare_builds_once_and_holds_only_the_runtime(tmp_path: Path):
    a = _bootstrap.prepare(str(tmp_path / "boot"))
    b = _bootstrap.prepare(str(tmp_path / "boot"))
    assert a == b and os.listdir(tmp_path / "boot") == [os.path.basename(a)]
    top = sorted(os.listdir(a))
    assert top == ["attach.py", "sitecustomize.py", "suture"]
    assert sorted(os.listdir(os.path.join(a, "suture"))) == ["__init__.py", "runtime"]
    copied = {str(p.relative_to(Path(a) / "suture" / "runtime"))
              for p in (Path(a) / "suture" / "runtime").rglob("*.py")}
    assert {"__init__.py", "_agent.py", "engine/__init__.py", "engine/commit.py", "protocol.py"} <= copied


def test_a_bootstrapped_process_can_apply_through_its_agent(targets: Targets, tmp_path: Path):
    # The full chain in a foreign environment: only the bootstrap dir and the app on the path.
    from test_agent import patch_b64

    patch = patch_b64(tmp_path)
    boot = _bootstrap.prepare(str(targets.root / "boot"))
    env = targets.env(SUTURE_AGENT="1")
    env["PYTHONPATH"] = os.pathsep.join([boot, str(tmp_path / "v1")])
    script = targets.script("import sys\nfrom tiny import calc\nfor line in sys.stdin:\n"
                            "    print(calc.value(), flush=True)\n")
    proc = targets.start([sys.executable, str(script)], env, stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "1\n"
    assert result(path, "apply", patch=patch)["state"] == "applied"
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "2\n"
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
