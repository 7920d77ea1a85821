"""The gdb that ``suture attach`` finds on PATH, as scripts/test.sh leaves it.

``suture attach`` is made of gdb inferior calls. Debian 12's gdb 13.1 cannot make any on
CPUs with AMX ("Couldn't write extended state status: Bad address."), so scripts/test.sh
puts trixie's gdb from scripts/get-gdb.sh first on PATH when the system's fails. These
tests say plainly when the gdb in use is the cause of test_attach.py's failures, and check
what the wrapper get-gdb.sh writes promises (docs/live-processes.md, "Which gdb"):
the environment it gives gdb's Python does not reach the programs gdb starts, and
another user (root's attach runs gdb as the target's user) can run it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

GDB = shutil.which("gdb")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not sys.platform.startswith("linux") or GDB is None, reason="needs Linux and gdb")]
REPO = Path(__file__).resolve().parents[2]
WRAPPER_MARK = "# Made by scripts/get-gdb.sh"


def gdb(*args: str, user: Optional[int] = None, timeout: float = 60) -> str:
    """gdb's output (stdout and stderr) in the clean environment attach.py gives it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/",
           "TERM": "dumb"}
    kwargs: Dict[str, Any] = {}
    if user is not None:
        kwargs = {"user": user, "group": user, "extra_groups": []}
    out = subprocess.run([str(GDB), "-nx", "-nh", "-batch", *args], env=env, cwd="/",
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout, **kwargs)
    return str(out.stdout) + str(out.stderr)


def inferior_call(user: Optional[int] = None) -> List[str]:
    """The lines of a gdb session that starts `sleep`, calls getpid() in it, kills it."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    return gdb("-ex", "python print('py-ok', gdb.VERSION)", "-ex", "set startup-with-shell off",
               "-ex", "catch syscall clock_nanosleep", "-ex", "run",
               "-ex", "print (int)getpid()", "-ex", "kill", "--args", sleep, "5",
               user=user).splitlines()


def is_get_gdb_wrapper() -> bool:
    with open(str(GDB), "rb") as f:
        return WRAPPER_MARK.encode() in f.read(256)


def test_gdb_on_path_has_python_and_makes_inferior_calls():
    lines = inferior_call()
    assert any(line.startswith("py-ok ") for line in lines), \
        f"{GDB} has no working Python:\n" + "\n".join(lines[-5:])
    assert any(re.fullmatch(r"\$1 = [1-9][0-9]*", line) for line in lines), (
        f"{GDB} cannot make an inferior call, so `suture attach` cannot work with it "
        f"(gdb 13 on an AMX CPU? see docs/live-processes.md, 'Which gdb'):\n"
        + "\n".join(lines[-5:]))


def test_get_gdb_check_mode_agrees():
    # --check is what scripts/test.sh decides with; it must pass the gdb tests use
    out = subprocess.run(["bash", str(REPO / "scripts" / "get-gdb.sh"), "--check", str(GDB)],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr


def test_get_gdb_check_mode_says_why_it_fails(tmp_path: Path):
    fake = tmp_path / "gdb"
    fake.write_text("#!/bin/sh\necho 'Python scripting is not supported in this copy of GDB.'\n")
    fake.chmod(0o755)
    out = subprocess.run(["bash", str(REPO / "scripts" / "get-gdb.sh"), "--check", str(fake)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert out.stdout.startswith(f"{fake} has no working Python (Python scripting is not")


def test_wrapper_keeps_its_environment_from_programs_gdb_starts():
    if not is_get_gdb_wrapper():
        pytest.skip(f"{GDB} is not scripts/get-gdb.sh's wrapper")
    env = shutil.which("env") or "/usr/bin/env"
    out = gdb("-ex", "python import os; print('gdb-sees', os.environ.get('PYTHONHOME'))",
              "-ex", "set startup-with-shell off", "-ex", "run", "--args", env)
    seen = [line for line in out.splitlines() if line.startswith("gdb-sees ")]
    assert seen and seen[0] != "gdb-sees None", out          # gdb's own Python needs it
    started = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert "PATH" in started, out                             # env really ran
    assert not started & {"PYTHONHOME", "GCONV_PATH"}, out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run gdb as another uid")
def test_another_user_can_run_it():
    # root's `suture attach` runs gdb as the target's user: that user must be able to
    # execute it and everything it loads
    lines = inferior_call(user=65534)
    assert any(re.fullmatch(r"\$1 = [1-9][0-9]*", line) for line in lines), \
        "\n".join(lines[-5:])
