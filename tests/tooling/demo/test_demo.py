"""Tests for ``suture demo`` (suture.tooling.demo): the story is also a smoke test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from suture.tooling import demo

SRC = Path(__file__).resolve().parents[3] / "src"


def _target_pid(out: str) -> int:
    m = re.search(r"started like `suture run python -m notesvc`: PID (\d+), agent loaded", out)
    assert m, f"the demo did not print the target's PID:\n{out}"
    return int(m.group(1))


def _gone(pid: int) -> bool:
    """No process (not even a zombie) has ``pid`` any more."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.mark.slow
def test_demo_patches_reverts_and_exits_zero(tmp_path: Path) -> None:
    # A proxy that does not exist: the demo must talk to 127.0.0.1 directly.
    # The user's runtime dir must not be touched: the demo's agent has a private one.
    user_runtime = tmp_path / "user-runtime"
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1",
               SUTURE_RUNTIME_DIR=str(user_runtime),
               http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_COLOR="1")
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    proc = subprocess.run([sys.executable, "-m", "suture.tooling.cli", "demo", "--fast"],
                          capture_output=True, text=True, env=env, timeout=60)
    out = proc.stdout
    pid = _target_pid(out)
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"
    for line in [
        "!!  GET /files/..%2Fsecret.txt -> 200 'db_password=hunter2",
        "!!  exploit works: the secret leaked",
        "live     changed function     notesvc.files:resolve",
        "ok  agent of PID {pid}: apply -> applied (notesvc.files applied; 1 op)",
        "ok  GET /files/..%2Fsecret.txt -> 403 'forbidden'",
        "ok  exploit blocked",
        'ok  GET /notes -> 200 {"user": "alice", "notes": ["buy milk"]}',
        "ok  state intact: same session table, same hit counter, no restart",
        "ok  agent of PID {pid}: revert -> reverted",
        "ok  reverted exactly: v1 behaviour is back, bug included",
        "ok  agent of PID {pid}: apply -> applied (",
        "ok  notesvc (PID {pid}) stopped (signal 15)",
        "Demo passed",
    ]:
        line = line.replace("{pid}", str(pid))
        assert line in out, f"missing {line!r} in:\n{out}"
    # A separate process, its agent in the demo's private runtime directory.
    sock = re.search(r"agent socket: (\S+)", out)
    assert sock and sock.group(1).endswith(f"/run/{pid}.sock"), out
    assert sock.group(1).startswith(os.path.join(tempfile.gettempdir(), "suture-demo-")), out
    assert not os.path.exists(sock.group(1))  # the temporary directory is gone
    assert _gone(pid), f"the target PID {pid} outlived the demo"
    assert not user_runtime.exists()
    assert ", 0 failed" in out
    assert "[7/7]" in out
    assert proc.stderr == ""


@pytest.mark.slow
def test_demo_returns_1_and_names_the_step_when_a_step_misbehaves(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path_before = list(sys.path)
    monkeypatch.setattr(demo, "EXPLOIT", "/files/missing.txt")

    assert demo.run(fast=True) == 1

    out, err = capsys.readouterr()
    assert err.strip() == ("demo FAILED at step 2: GET /files/missing.txt should leak "
                           "secret.txt on v1, got 404 'not found'")
    # The demo cleans up after itself even when it fails.
    assert not {m for m in sys.modules if m.split(".")[0] == "notesvc"}
    assert sys.path == path_before
    pid = _target_pid(out)
    assert pid != os.getpid()
    assert _gone(pid), f"the target PID {pid} outlived the failed demo"


def _snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_the_demo_leaves_the_hosts_store_audit_log_and_config_untouched(tmp_path: Path) -> None:
    # Issue 18: the demo's agent audited its applies and reverts in the host's store, so
    # they showed in `suture audit`, `status` and the metrics as the host's own history.
    from signing import signed, make_patch

    host_state, host_config = tmp_path / "host-state", Path(os.environ["SUTURE_CONFIG_DIR"])
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1",
               SUTURE_STATE_DIR=str(host_state), SUTURE_RUNTIME_DIR=str(tmp_path / "run"))
    patch = tmp_path / "host.suture"
    patch.write_bytes(signed(make_patch(tmp_path / "trees")))
    # A host with history: one installed patch, so its store and audit log exist.
    got = subprocess.run([sys.executable, "-m", "suture", "install", str(patch)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert got.returncode == 0, got.stdout + got.stderr
    audit_before = subprocess.run([sys.executable, "-m", "suture", "audit", "--json"],
                                  capture_output=True, text=True, env=env, timeout=60)
    state_before, config_before = _snapshot(host_state), _snapshot(host_config)
    assert state_before

    proc = subprocess.run([sys.executable, "-m", "suture", "demo", "--fast"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Demo passed" in proc.stdout

    assert _snapshot(host_state) == state_before
    assert _snapshot(host_config) == config_before
    audit_after = subprocess.run([sys.executable, "-m", "suture", "audit", "--json"],
                                 capture_output=True, text=True, env=env, timeout=60)
    assert audit_after.returncode == audit_before.returncode
    assert audit_after.stdout == audit_before.stdout
    assert "notesvc" not in audit_after.stdout
