"""Real processes running urllib3 1.26.17 or 1.26.18 (the wheels in tests/data) with the
agent, and the CVE-2023-45803 patch built from them: shared by the advisory and
restart-debt tests (tests/tooling/fleet)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import livecli
from livecli import SRC, reap
from signing import signed
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

DATA = Path(__file__).resolve().parent / "data"
CVE = "CVE-2023-45803"

# Says, every 50 ms, which urllib3 it runs.
TARGET = """\
import os, sys, time
import urllib3
import suture.agent
suture.agent.start()
out = {out!r}
while True:
    with open(out + ".tmp", "w") as f:
        f.write(urllib3.__version__)
    os.replace(out + ".tmp", out)
    time.sleep(0.05)
"""


def releases(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Both releases unpacked, and the signed patch between them."""
    cache = tmp_path_factory.mktemp("cache")
    old = materialize(str(DATA / "urllib3-1.26.17-py2.py3-none-any.whl"), cache_dir=cache)
    new = materialize(str(DATA / "urllib3-1.26.18-py2.py3-none-any.whl"), cache_dir=cache)
    report = build_trees(old, new, cves=[CVE])
    patch = tmp_path_factory.mktemp("patch") / "urllib3.suture"
    patch.write_bytes(signed(report.data))
    return {"old": old.root, "new": new.root, "patch": patch}


class Target:
    def __init__(self, proc: subprocess.Popen, out: Path) -> None:
        self.proc, self.out, self.pid = proc, out, proc.pid

    def observed(self) -> str:
        try:
            return self.out.read_text()
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def targets(rundir: str, tmp_path: Path) -> Iterator[Any]:
    """``run(root, script=TARGET)`` starts a target on the release under ``root`` and
    returns it once its agent listens; ``run.stop(target)`` ends one; all end on exit."""
    procs: List[subprocess.Popen] = []

    def run(root: Path, script: str = TARGET) -> Target:
        out = tmp_path / f"observed-{len(procs)}.txt"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(root)]),
                   SUTURE_RUNTIME_DIR=rundir)
        proc = subprocess.Popen([sys.executable, "-c", script.format(out=str(out))], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return livecli.ready(proc, Target(proc, out), rundir)

    def stop(target: Target) -> None:
        reap([target.proc])
        procs.remove(target.proc)

    run.stop = stop  # type: ignore[attr-defined]
    # One test of these at a time on the host: `suture metrics` and the exposure counts
    # judge every process of the user, and another run's targets (scripts/test.sh runs two
    # Python versions at once) load the same urllib3 release (a CI run counted 2 exposed).
    with livecli.host_lock():
        try:
            yield run
        finally:
            reap(procs)
