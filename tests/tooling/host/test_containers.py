"""A target in its own pid and mount namespace, as in a container, patched from the node.

The target runs under `unshare --pid --mount`: it is pid 1 in its namespace and its agent's
socket directory is a tmpfs mounted only there. From the node, `suture ps` and
`suture apply --pid HOSTPID` must find the agent through /proc/HOSTPID/root by the pid the
target sees (docs/live-processes.md, "Containers and Kubernetes"). Root only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

import livecli as live
from benchmarks.procs import first_child
from livecli import PKG, SRC

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare"),
]

versions = live.versions


@pytest.fixture
def contained(versions: Dict[str, Path], tmp_path: Path) -> Iterator[Dict[str, object]]:
    rt = tmp_path / "rt"          # on the node: an empty directory; in the namespace: tmpfs
    rt.mkdir(mode=0o700)
    out = tmp_path / "observed.txt"
    script = live.TARGET.format(root=str(versions["v1"]), out=str(out),
                                imports=f"from {PKG} import answer", observe="answer()")
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=str(rt))
    shell = (f'mount -t tmpfs -o mode=0700 tmpfs "{rt}" && '
             f'exec {sys.executable} -c "$SCRIPT"')
    # --kill-child: the target is pid 1 of its namespace, which SIGKILL of `unshare` alone
    # left running after the test (seen: one per test run, still alive hours later).
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount",
                             "--mount-proc",
                             "/bin/sh", "-c", shell], env=dict(env, SCRIPT=script),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        host_pid = first_child(proc.pid)
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_text()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the target never observed"
            time.sleep(0.02)
        yield {"pid": host_pid, "rt": rt, "out": out}
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUTURE_RUNTIME_DIR"}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_the_node_patches_a_process_in_its_own_pid_and_mount_namespace(
        contained: Dict[str, object], versions: Dict[str, Path]) -> None:
    pid, rt, out = contained["pid"], contained["rt"], contained["out"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert [line.split()[-1] for line in status.splitlines()
            if line.startswith("NSpid:")] == ["1"]          # pid 1 in its namespace
    assert list(Path(str(rt)).iterdir()) == []               # its socket: not on the node

    ps = cli("ps", "--json")
    assert ps.returncode == 0, ps.stderr
    (row,) = [r for r in json.loads(ps.stdout)["processes"] if r["pid"] == pid]
    assert row["agent"] is True, row

    done = cli("apply", str(versions["patch"]), "--pid", str(pid), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (r,) = json.loads(done.stdout)["processes"]
    assert (r["pid"], r["outcome"]) == (pid, "applied")
    deadline = time.monotonic() + 10
    while Path(str(out)).read_text() != "new":
        assert time.monotonic() < deadline, Path(str(out)).read_text()
        time.sleep(0.02)
