"""Issue 16, situations 2 and 8: `suture status` checks the live code, never its own record.

Real target processes with the agent, driven by the real CLI (tests/livecli.py):

* a plain target that reloads the patched module (``importlib.reload``): the import hook
  serves the reload and the module runs the fixed code again; a reload that escapes the
  hook makes status say "exposed (reverted by the application)", and a second apply
  applies again;
* a real Jupyter kernel (jupyter_client) with ``%autoreload 2`` and ``importlib.reload``;
* a generator suspended inside the patched function: "draining" (exit 2, names the
  generator) until it is finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import livecli
from livecli import PKG, SRC, cli, patch_id
from signing import signed
from suture.runtime import store
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

pytestmark = pytest.mark.slow

versions, rundir, state = livecli.versions, livecli.rundir, livecli.state

RELOADER = """\
import importlib, os, sys, time
sys.path.insert(0, {root!r})
import {pkg}
import suture.agent
suture.agent.start()
out, trigger, reloads = {out!r}, {trigger!r}, 0
while True:
    for kind in ("reload", "unserved"):
        if os.path.exists(trigger + "." + kind):
            # "unserved": a finder ahead of Suture's (some tools insert theirs first) makes
            # the reload escape the import hook
            ours = [f for f in sys.meta_path if type(f).__name__ == "SutureFinder"] \\
                if kind == "unserved" else []
            for f in ours:
                sys.meta_path.remove(f)
            importlib.reload({pkg})
            sys.meta_path[:0] = ours
            reloads += 1
            os.remove(trigger + "." + kind)
    value = "%s %d" % ({pkg}.answer(), reloads)
    with open(out + ".tmp", "w") as f:
        f.write(value)
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""

GENERATOR = """\
import os, sys, time
sys.path.insert(0, {root!r})
import sutgendemo
import suture.agent
suture.agent.start()
out, trigger = {out!r}, {trigger!r}
gen = sutgendemo.numbers()
seen = [next(gen)]           # suspended inside the vulnerable code, before any patch
value = "started"
while True:
    if gen is not None and os.path.exists(trigger):
        seen += list(gen)
        gen = None
        value = "finished " + ",".join(seen)
    with open(out + ".tmp", "w") as f:
        f.write(value)
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""


class Proc:
    def __init__(self, proc: subprocess.Popen, out: Path, trigger: Path) -> None:
        self.proc, self.out, self.trigger, self.pid = proc, out, trigger, proc.pid

    def observed(self) -> str:
        try:
            return self.out.read_text()
        except FileNotFoundError:
            return ""

    def wait_for(self, value: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.observed() != value:
            assert self.proc.poll() is None, f"target exited: {self.proc.stderr.read()}"
            assert time.monotonic() < deadline, f"target shows {self.observed()!r}, not {value!r}"
            time.sleep(0.01)


@pytest.fixture
def start(rundir: str, tmp_path: Path) -> Iterator[Callable[[str, Dict[str, str]], Proc]]:
    procs: List[subprocess.Popen] = []

    def go(template: str, fields: Dict[str, str]) -> Proc:
        out, trigger = tmp_path / f"out-{len(procs)}", tmp_path / f"trigger-{len(procs)}"
        script = template.format(out=str(out), trigger=str(trigger), pkg=PKG, **fields)
        env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        target = Proc(proc, out, trigger)
        return livecli.ready(proc, target, rundir)

    try:
        yield go
    finally:
        livecli.reap(procs)


def status(rundir: str, pid: int) -> Tuple[int, Dict[str, Any], Dict[str, Any]]:
    """(exit code, the process's row, the patch rows of the report)."""
    out = cli(rundir, "status", "--pid", str(pid), "--json")
    assert out.stdout, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == out.returncode
    [proc] = doc["processes"]
    rows = {e["id"]: r for e in doc["patches"] for r in e["processes"] if r["pid"] == pid}
    return out.returncode, proc, rows


def apply(rundir: str, patch: Path, pid: int) -> Dict[str, Any]:
    out = cli(rundir, "apply", str(patch), "--pid", str(pid), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    [row] = json.loads(out.stdout)["processes"]
    return row  # type: ignore[no-any-return]


def test_reload_of_a_patched_module_keeps_the_fix_and_a_reload_that_escapes_is_exposed(
        versions: Dict[str, Path], rundir: str, state: Path,
        start: Callable[[str, Dict[str, str]], Proc]) -> None:
    target = start(RELOADER, {"root": str(versions["v1"])})
    target.wait_for("old 0")
    pid, fix = target.pid, str(versions["id"])
    assert apply(rundir, versions["patch"], pid)["outcome"] == "applied"
    target.wait_for("new 0")

    # importlib.reload re-executes the vulnerable file: the hook patches it again
    target.trigger.with_suffix(".reload").touch()
    target.wait_for("new 1")
    code, proc, rows = status(rundir, pid)
    assert code == 0 and rows[fix]["state"] == "fixed", rows
    assert proc["applied"][0]["live"] == {PKG: "verified"}

    # a reload the hook does not see brings the old code back: status must not say fixed
    target.trigger.with_suffix(".unserved").touch()
    target.wait_for("old 2")
    code, proc, rows = status(rundir, pid)
    assert code == 2 and proc["state"] == "exposed", rows
    assert rows[fix]["state"] == "exposed"
    assert "reverted by the application (SUT-E211)" in rows[fix]["reason"], rows
    assert "answer" in rows[fix]["reason"] and rows[fix]["fix"].startswith("suture apply")

    # the next apply applies again instead of answering "already applied"
    row = apply(rundir, versions["patch"], pid)
    assert row["outcome"] == "applied", row
    target.wait_for("new 2")
    code, _, rows = status(rundir, pid)
    assert code == 0 and rows[fix]["state"] == "fixed", rows
    deadline = time.monotonic() + 5   # the finding went to the audit log too
    while not [r for r in store.audit_log() if r["op"] == "verify" and r["pid"] == pid]:
        assert time.monotonic() < deadline, store.audit_log()
        time.sleep(0.05)
    [found] = [r for r in store.audit_log() if r["op"] == "verify" and r["pid"] == pid]
    assert (found["patch_id"], found["result"]) == (fix, "reverted by the application")

    # revert restores the baseline, the reloaded module included
    out = cli(rundir, "revert", fix[:12], "--pid", str(pid), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    target.wait_for("old 2")


# -- a real Jupyter kernel: %autoreload 2 and importlib.reload -----------------------------

def test_jupyter_kernel_autoreload_and_reload_keep_the_fix(
        versions: Dict[str, Path], rundir: str, state: Path, tmp_path: Path) -> None:
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    root = tmp_path / "pkg"
    livecli.write_pkg(root, "old")    # a copy of its own: the test touches the file
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir),
                    cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code: str) -> str:
            out: List[str] = []

            def hook(msg: Dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("ERROR " + "\n".join(msg["content"]["traceback"]))

            reply = kc.execute_interactive(code, timeout=30, output_hook=hook)
            assert reply["content"]["status"] == "ok", out
            return "".join(out).strip()

        pid = int(run(f"import os, sys, importlib\nsys.path.insert(0, {str(root)!r})\n"
                      "import suture.agent\nsuture.agent.start()\n"
                      f"import {PKG}\nfrom {PKG} import answer\nprint(os.getpid())"))
        run("%load_ext autoreload\n%autoreload 2")
        # IPython 9 first tries its "deduperreload", which for an unchanged source does
        # nothing: turned off, so that every reload is superreload's (clear the namespace,
        # importlib.reload, copy the new code into the old functions), as on IPython 8
        run("r = get_ipython().magics_manager.registry['AutoreloadMagics']._reloader\n"
            "if hasattr(r, 'deduper_reloader'):\n    r.deduper_reloader.enabled = False")
        observe = f"print({PKG}.answer(), answer())"
        assert run(observe) == "old old"
        out = cli(rundir, "apply", str(versions["patch"]), "--pid", str(pid), "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        assert run(observe) == "new new"

        run(f"{PKG}.marker = 1")   # gone once autoreload really executed the module again
        later = time.time() + 10   # the file "changed": autoreload reloads it before the cell
        os.utime(root / PKG / "__init__.py", (later, later))
        assert run(observe + f"\nprint(hasattr({PKG}, 'marker'))") == "new new\nFalse"
        assert run(f"importlib.reload({PKG})\n" + observe) == "new new"
        code, proc, rows = status(rundir, pid)
        assert code == 0, rows
        assert rows[str(versions["id"])]["state"] == "fixed"
        assert proc["applied"][0]["live"] == {PKG: "verified"}
        assert proc["applied"][0]["modules"] == {PKG: "applied"}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- draining: a suspended generator started before the patch -----------------------------

@pytest.fixture(scope="module")
def generators(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("gen")
    for version, word in (("v1", "old"), ("v2", "new")):
        pkg = base / version / "sutgendemo"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(
            f"def numbers():\n    yield {word!r}\n    yield {word!r}\n")
    report = build_trees(materialize(str(base / "v1")),
                         materialize(str(base / "v2")), cves=["CVE-2099-16"])
    patch = base / "gen.suture"
    patch.write_bytes(signed(report.data))
    return {"v1": base / "v1", "patch": patch}


def metrics(rundir: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = cli(rundir, "metrics")
    assert out.returncode == 0, out.stderr
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(out.stdout) for s in family.samples}


def test_a_suspended_generator_on_old_code_is_draining_until_it_finishes(
        generators: Dict[str, Path], rundir: str, state: Path,
        start: Callable[[str, Dict[str, str]], Proc]) -> None:
    target = start(GENERATOR, {"root": str(generators["v1"])})
    target.wait_for("started")
    fix = patch_id(generators["patch"])
    assert apply(rundir, generators["patch"], target.pid)["outcome"] == "applied"

    code, proc, rows = status(rundir, target.pid)
    assert code == 2 and proc["state"] == "exposed", rows
    assert rows[fix]["state"] == "draining", rows
    assert "SUT-E212" in rows[fix]["reason"], rows
    assert "sutgendemo:numbers line 2 in generator" in rows[fix]["reason"], rows
    out = cli(rundir, "status", "--pid", str(target.pid))
    assert out.returncode == 2 and "draining" in out.stdout, out.stdout
    m = metrics(rundir)    # the same rule: not protected while draining
    assert m[("suture_exposed_processes", (("cve", "CVE-2099-16"),))] == 1
    assert m[("suture_patch_processes", (("patch", fix[:12]), ("state", "draining")))] == 1

    # Counting calls into the replaced code (issue 18, item 5), from now on; not drained.
    out = cli(rundir, "status", "--pid", str(target.pid), "--old-calls", "--json")
    [applied] = json.loads(out.stdout)["processes"][0]["applied"]
    assert applied["drained_at"] is None, applied
    counting = sys.version_info >= (3, 12)
    assert ("calls" in applied["old_calls"]) is counting, applied

    target.trigger.touch()
    target.wait_for("finished old,old")   # it finished on the code it started with
    code, proc, rows = status(rundir, target.pid)
    assert code == 0 and rows[fix]["state"] == "fixed", rows
    [applied] = proc["applied"]
    assert applied["drained_at"] is not None, applied   # the last old frame has gone
    out = cli(rundir, "status", "--pid", str(target.pid))
    if counting:   # the generator resumed in the old code: evidence it ran after the apply
        assert applied["old_calls"]["by_function"].get("sutgendemo:numbers", 0) >= 1, applied
        assert "calls into replaced code" in out.stdout and "; drained" in out.stdout, out.stdout
    else:
        assert "3.12" in applied["old_calls"]["unavailable"], applied
        assert "not counted" in out.stdout, out.stdout
    out = cli(rundir, "status", "--pid", str(target.pid), "--no-old-calls", "--json")
    assert "old_calls" not in json.loads(out.stdout)["processes"][0]["applied"][0]
    m = metrics(rundir)
    assert m[("suture_exposed_processes", (("cve", "CVE-2099-16"),))] == 0
    assert m[("suture_patch_processes", (("patch", fix[:12]), ("state", "fixed")))] == 1
