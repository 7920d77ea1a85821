"""Tests for ``suture demo`` (suture.tooling.demo): the story is also a smoke test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suture.tooling import demo

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.slow
def test_demo_patches_reverts_and_exits_zero() -> None:
    # A proxy that does not exist: the demo must talk to 127.0.0.1 directly.
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1",
               http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_COLOR="1")
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    proc = subprocess.run([sys.executable, "-m", "suture.tooling.cli", "demo", "--fast"],
                          capture_output=True, text=True, env=env, timeout=60)
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"
    for line in [
        "!!  GET /files/..%2Fsecret.txt -> 200 'db_password=hunter2",
        "!!  exploit works: the secret leaked",
        "live     changed function     notesvc.files:resolve",
        "ok  suture.runtime.apply -> applied (notesvc.files applied; 1 op)",
        "ok  GET /files/..%2Fsecret.txt -> 403 'forbidden'",
        "ok  exploit blocked",
        'ok  GET /notes -> 200 {"user": "alice", "notes": ["buy milk"]}',
        "ok  state intact: same session table, same hit counter, no restart",
        "ok  suture.runtime.revert -> reverted",
        "ok  reverted exactly: v1 behaviour is back, bug included",
        "Demo passed",
    ]:
        assert line in out, f"missing {line!r} in:\n{out}"
    assert ", 0 failed" in out
    assert "[7/7]" in out
    assert proc.stderr == ""


@pytest.mark.slow
def test_demo_returns_1_and_names_the_step_when_a_step_misbehaves(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path_before = list(sys.path)
    monkeypatch.setattr(demo, "EXPLOIT", "/files/missing.txt")

    assert demo.run(fast=True) == 1

    err = capsys.readouterr().err
    assert err.strip() == ("demo FAILED at step 2: GET /files/missing.txt should leak "
                           "secret.txt on v1, got 404 'not found'")
    # The demo cleans up after itself even when it fails.
    assert not {m for m in sys.modules if m.split(".")[0] == "notesvc"}
    assert sys.path == path_before
