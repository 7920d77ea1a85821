"""Least privilege (issue 5): root acting on another user's process acts as that user.

Needs root (to run targets as uid 65534) and a system Python that uid may execute; the
runtime is copied where that uid can read it, as `suture run` would make it importable.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from suture.tooling.host import client
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import wait_for
from signing import signed

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
SRC = Path(__file__).resolve().parents[2] / "src" / "suture"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="running targets as another uid needs root"),
    pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON) or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; assert sys.version_info >= (3, 9)"]).returncode,
        reason="needs a system Python 3.9+ that another uid can run"),
]

APP = r'''
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
if sys.argv[3] == "agent":
    import suture.agent
    suture.agent.start()
from tiny import calc
print("ready", flush=True)
sys.stdin.read()
'''


def owned_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(mode=mode)
    os.chown(path, NOBODY, NOBODY)
    return path


@pytest.fixture
def base() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="suture-priv-"))
    try:
        root.chmod(0o755)
        shutil.copytree(SRC, root / "lib" / "suture",
                        ignore=shutil.ignore_patterns("__pycache__", "tooling"))
        for tag, value in (("v1", "1"), ("v2", "2")):
            (root / tag / "tiny").mkdir(parents=True)
            (root / tag / "tiny" / "__init__.py").write_text("")
            (root / tag / "tiny" / "calc.py").write_text(f"def value():\n    return {value}\n")
        (root / "app.py").write_text(APP)
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_as_nobody(base: Path, env: Dict[str, str], agent: bool,
                    procs: List[subprocess.Popen]) -> subprocess.Popen:
    proc = subprocess.Popen([SYSTEM_PYTHON, str(base / "app.py"), str(base / "lib"),
                             str(base / "v1"), "agent" if agent else "plain"],
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env},
                            cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, user=NOBODY, group=NOBODY,
                            extra_groups=[])
    procs.append(proc)
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.fixture
def procs() -> Iterator[List[subprocess.Popen]]:
    started: List[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.communicate()


def test_root_applies_to_another_users_process_as_that_user(base: Path, procs, monkeypatch,
                                                            tmp_path: Path):
    run, state = owned_dir(base / "run"), owned_dir(base / "state")
    target = start_as_nobody(base, {"SUTURE_RUNTIME_DIR": str(run),
                                    "SUTURE_STATE_DIR": str(state)}, True, procs)
    monkeypatch.delenv("SUTURE_RUNTIME_DIR", raising=False)   # found from its environment
    sock = run / f"{target.pid}.sock"
    wait_for(sock.exists, "the agent's socket", proc=target)
    assert client.call(target.pid, "hello")["pid"] == target.pid

    report = build_trees(materialize(str(base / "v1")), materialize(str(base / "v2")))
    assert report.data is not None
    patch = tmp_path / "fix.suture"
    patch.write_bytes(signed(report.data))
    env = {k: v for k, v in os.environ.items() if k != "SUTURE_RUNTIME_DIR"}
    done = subprocess.run([sys.executable, "-m", "suture", "apply", str(patch), "--pid",
                           str(target.pid), "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert json.loads(done.stdout)["processes"][0]["outcome"] == "applied"
    # The agent audits the peer's uid (SO_PEERCRED): the CLI ran as root, connected as 65534.
    with sqlite3.connect(str(state / "store.db")) as db:
        peers = [r for r in db.execute("SELECT op, actor_uid FROM audit WHERE op = 'apply'")]
    assert peers == [("apply", NOBODY)]
    assert sorted(os.listdir(base)) == ["app.py", "lib", "run", "state", "v1", "v2"]


def test_a_symlink_planted_by_the_target_user_does_not_get_roots_connection(
        base: Path, procs, monkeypatch):
    # Root's own socket, in a directory only root may enter.
    private = base / "private"
    private.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(private / "root-only.sock"))
    listener.listen(1)
    listener.settimeout(0.2)
    reached: List[bytes] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            reached.append(conn.recv(100) or b"(connected)")
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    try:
        # The target's user controls its SUTURE_RUNTIME_DIR and what is in it.
        run = owned_dir(base / "trap")
        target = start_as_nobody(base, {"SUTURE_RUNTIME_DIR": str(run)}, False, procs)
        (run / f"{target.pid}.sock").symlink_to(private / "root-only.sock")
        monkeypatch.delenv("SUTURE_RUNTIME_DIR", raising=False)
        with pytest.raises(client.AgentPermissionDenied):
            client.call(target.pid, "hello", timeout=5)
    finally:
        t.join(5)
        listener.close()
    assert reached == []
