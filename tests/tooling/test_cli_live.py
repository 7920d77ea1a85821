"""ps / apply / status / revert end to end: the real agent in a real target process.

The target imports a v1 package, starts its agent with ``suture.agent.start()`` and keeps
writing what an alias of the patched function returns to a file; the CLI runs as a
subprocess, and the tests watch the file change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from suture.runtime.errors import SutureError
from suture.tooling import client
from suture.tooling.build import build_trees
from suture.tooling.sources import materialize

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = "sutlivedemo"

TARGET = """\
import os, sys, time
sys.path.insert(0, {root!r})
{imports}
import suture.agent
suture.agent.start()
out = {out!r}
while True:
    value = {observe}
    with open(out + ".tmp", "w") as f:
        f.write(value)
    os.replace(out + ".tmp", out)
    time.sleep(0.02)
"""

pytestmark = pytest.mark.slow


def write_pkg(root: Path, body: str) -> Path:
    pkg = root / PKG
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"def answer():\n    return {body!r}\n")
    return root


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("live")
    v1 = write_pkg(base / "v1", "old")
    v2 = write_pkg(base / "v2", "new")
    other = write_pkg(base / "other", "someone else's")
    report = build_trees(materialize(str(v1)), materialize(str(v2)), cves=["CVE-2099-8"])
    patch = base / "fix.suture"
    patch.write_bytes(report.data)
    return {"v1": v1, "other": other, "patch": patch, "id": Path(report.patch.id)}


@pytest.fixture
def rundir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="sut-live-")   # 0700, ours, short enough for AF_UNIX
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Target:
    def __init__(self, proc: subprocess.Popen, out: Path) -> None:
        self.proc = proc
        self.out = out
        self.pid = proc.pid

    def observed(self) -> str:
        try:
            return self.out.read_text()
        except FileNotFoundError:
            return ""

    def wait_for(self, value: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.observed() != value:
            assert self.proc.poll() is None, f"target exited: {self.proc.stderr.read()}"
            assert time.monotonic() < deadline, f"target still shows {self.observed()!r}"
            time.sleep(0.01)


@pytest.fixture
def start_target(rundir: str, tmp_path: Path) -> Iterator[Callable[..., Target]]:
    procs: List[subprocess.Popen] = []

    def start(root: Path, imported: bool = True) -> Target:
        out = tmp_path / f"observed-{len(procs)}.txt"
        script = TARGET.format(
            root=str(root), out=str(out),
            imports=f"from {PKG} import answer" if imported else "",
            observe="answer()" if imported else f"str({PKG!r} in sys.modules)")
        env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
        proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        target = Target(proc, out)
        deadline = time.monotonic() + 20
        while True:   # ready when its agent answers hello and it has observed once
            assert proc.poll() is None, f"target exited: {proc.stderr.read()}"
            try:
                client.hello(proc.pid, 1.0, runtime_dir=rundir)
                if target.observed():
                    return target
            except SutureError:
                pass
            assert time.monotonic() < deadline, "the target's agent never answered"
            time.sleep(0.01)

    try:
        yield start
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()


def cli(rundir: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def rows(out: subprocess.CompletedProcess) -> List[Dict[str, object]]:
    assert out.stdout, out.stderr
    return json.loads(out.stdout)["processes"]  # type: ignore[no-any-return]


def test_apply_status_ps_revert_change_the_running_target(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    target = start_target(versions["v1"])
    assert target.observed() == "old"
    patch, patch_id = str(versions["patch"]), str(versions["id"])

    out = cli(rundir, "apply", patch, "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    [row] = rows(out)
    assert (row["pid"], row["outcome"], row["code"]) == (target.pid, "applied", None)
    target.wait_for("new")

    out = cli(rundir, "apply", patch, "--pid", str(target.pid), "--json")
    assert out.returncode == 0 and rows(out)[0]["outcome"] == "already applied"

    out = cli(rundir, "status", "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    [row] = rows(out)
    [applied] = row["result"]["patches"]  # type: ignore[index]
    assert (applied["id"], applied["cves"], applied["modules"]) == (
        patch_id, ["CVE-2099-8"], {PKG: "applied"})

    out = cli(rundir, "ps", "--json")
    assert out.returncode == 0, out.stderr
    [mine] = [p for p in json.loads(out.stdout)["processes"] if p["pid"] == target.pid]
    assert mine["agent"] is True and mine["patches"] == [patch_id]
    assert mine["python"] == "{}.{}.{}".format(*sys.version_info[:3])

    out = cli(rundir, "revert", patch_id[:12], "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert rows(out)[0]["outcome"] == "reverted"
    target.wait_for("old")

    out = cli(rundir, "revert", patch_id[:12], "--pid", str(target.pid), "--json")
    assert out.returncode == 2
    assert rows(out)[0]["code"] == "SUT-E300"


def test_apply_all_refuses_a_process_running_other_code_and_patches_the_rest(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    good = start_target(versions["v1"])
    other = start_target(versions["other"])
    out = cli(rundir, "apply", str(versions["patch"]), "--all", "--json")
    assert out.returncode == 2, out.stderr
    by_pid = {r["pid"]: r for r in rows(out)}
    assert by_pid[good.pid]["outcome"] == "applied"
    assert (by_pid[other.pid]["outcome"], by_pid[other.pid]["code"]) == ("refused", "SUT-E201")
    good.wait_for("new")
    assert other.observed() == "someone else's"


def test_module_not_yet_imported_is_pending_and_status_exits_2(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    target = start_target(versions["v1"], imported=False)
    out = cli(rundir, "apply", str(versions["patch"]), "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert rows(out)[0]["outcome"] == "pending import"
    out = cli(rundir, "status", "--pid", str(target.pid))
    assert out.returncode == 2, out.stderr
    assert f"{PKG:<40} pending import" in out.stdout
