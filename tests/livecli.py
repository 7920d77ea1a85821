"""Real target processes with the agent, driven by the real CLI: the helpers and fixtures of
tests/tooling/cli/test_cli_live.py, shared with fleet/test_daemon.py, host/test_containers.py
and tests/integrations/test_ansible.py.

The target imports a v1 package, starts its agent with ``suture.agent.start()`` and keeps
writing what an alias of the patched function returns to a file. The fixtures are used
by name: a test module binds them (``rundir, start_target = livecli.rundir, ...``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from suture.runtime.errors import SutureError
from suture.runtime.patchfile import load
from suture.tooling.host import client
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from signing import signed

SRC = Path(__file__).resolve().parents[1] / "src"
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
    patch.write_bytes(signed(report.data))
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


_held = [0]   # host_lock's depth in this process


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """One live test at a time on the host (re-entrant within a process). `suture status`
    without --pid, `metrics` and `vex` judge every process of the user, also from outside,
    and scripts/test.sh runs two Python versions at once: another run's targets, which load
    the same releases, were counted (CI: 6 exposed processes instead of 1)."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    lock = Path(tempfile.gettempdir()) / f"suture-tests-live-{os.getuid()}.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0


@pytest.fixture
def start_target(rundir: str, tmp_path: Path) -> Iterator[Callable[..., Target]]:
    with host_lock():
        yield from _start_target(rundir, tmp_path)


def _start_target(rundir: str, tmp_path: Path) -> Iterator[Callable[..., Target]]:
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
        return ready(proc, target, rundir)

    try:
        yield start
    finally:
        reap(procs)


def ready(proc: subprocess.Popen, target: Any, rundir: str, what: str = "target") -> Any:
    """Return ``target`` once its agent answers hello and it has observed once (20 s)."""
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read()}"
        try:
            client.hello(proc.pid, 1.0, runtime_dir=rundir)
            if target.observed():
                return target
        except SutureError:
            pass
        assert time.monotonic() < deadline, f"the {what}'s agent never answered"
        time.sleep(0.01)


def reap(procs: List[subprocess.Popen]) -> None:
    """Kill and wait for every process a fixture started."""
    for p in procs:
        p.kill()
        p.wait()
        if p.stderr:
            p.stderr.close()


def cli(rundir: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=120)


# -- suture status against the patch store: who is still exposed -------------------------
#
# A fake distribution: the package plus a `sutlivedemo-<version>.dist-info` next to it, on
# the target's sys.path, so the agent's `dists` answers with that version.

def write_dist(root: Path, body: str, version: str) -> Path:
    write_pkg(root, body)
    info = root / f"{PKG}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PKG}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{PKG}\n")   # 3.9: no packages_distributions()
    return root


def dist_patch(base: Path, old: Path, old_version: str, new: Path, new_version: str,
               cves: List[str]) -> Path:
    report = build_trees(replace(materialize(str(old)), name=PKG, version=old_version),
                         replace(materialize(str(new)), name=PKG, version=new_version),
                         cves=cves)
    assert report.target == {"kind": "distribution", "name": PKG,
                             "from_version": old_version, "to_version": new_version}
    out = base / f"{PKG}-{old_version}-{new_version}.suture"
    out.write_bytes(signed(report.data))
    return out


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("dists")
    d10 = write_dist(base / "1.0", "old", "1.0")
    d11 = write_dist(base / "1.1", "new", "1.1")
    d12 = write_dist(base / "1.2", "newer", "1.2")
    d20 = write_dist(base / "2.0", "old", "2.0")    # same code, another release
    return {"1.0": d10, "2.0": d20,
            "fix": dist_patch(base, d10, "1.0", d11, "1.1", ["CVE-2099-101"]),
            "cumulative": dist_patch(base, d10, "1.0", d12, "1.2",
                                     ["CVE-2099-101", "CVE-2099-102"])}


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store of this test's own; targets and the CLI inherit it through os.environ."""
    d = tmp_path / "state"
    monkeypatch.setenv("SUTURE_STATE_DIR", str(d))
    return d


def patch_id(path: Path) -> str:
    return load(path.read_bytes()).id
