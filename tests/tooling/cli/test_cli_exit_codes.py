"""Exit codes shared by every command (docs/errors.md, "Exit codes"), on the real CLI.

click's own usage-error code, 2, means "refused" / "exposed" for Suture's commands, so
usage errors exit 64 (EX_USAGE) instead; --help and --version exit 0; Ctrl-C exits 130.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

pytestmark = pytest.mark.slow


def suture(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["status", "--no-such-option"], "No such option"),
    (["no-such-command"], "No such command"),
    (["apply"], "Missing argument 'FILE'"),
    (["status", "--pid", "abc"], "'abc' is not a valid integer"),
    (["inspect", "/nonexistent/fix.suture"], "does not exist"),
])
def test_usage_errors_exit_64_not_2(args, message) -> None:
    out = suture(*args)
    assert out.returncode == 64, (out.stdout, out.stderr)
    assert message in out.stderr and "Usage:" in out.stderr
    assert out.stdout == ""


def test_suture_alone_prints_the_help_and_is_a_usage_error() -> None:
    out = suture()
    assert out.returncode == 64
    assert "Commands:" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["status", "--help"], ["apply", "-h"]])
def test_help_exits_0(args) -> None:
    out = suture(*args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage:") and out.stderr == ""


def test_version_exits_0() -> None:
    out = suture("--version")
    assert (out.returncode, out.stdout) == (0, "suture, version 0.1.0\n")


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    # The demo pauses between its steps: interrupt it after the first one is shown.
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=str(tmp_path / "run"),
               TMPDIR=str(tmp_path))
    # As from a terminal: a runner started in the background (bash without job control)
    # hands its children SIGINT ignored, and Python then installs no KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "suture", "demo"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "[1/" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.returncode == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
