"""Robustness and diagnosis (issue 13, findings 12-14; docs/security.md "Robustness").

* An agent whose process has no file descriptor left reports EMFILE (SUT-E640), never a
  baseline mismatch (SUT-E201), and changes nothing.
* A module imported while an apply is under way is patched, never an internal error
  (SUT-E999 ``KeyError``); many concurrent clients and a parallel apply over many real
  processes give no SUT-E999.
* A state directory on a full or read-only filesystem: installed patches are still read
  and applied by new processes, and the warning names the cause.

Every target is a real process with a real agent; filesystems are real tmpfs mounts
(root only: those tests skip otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from suture.runtime import store
from suture.runtime.patchfile import load
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.sources import materialize

from agentutil import Targets, call, result, wait_for
from signing import signed


def tree(tmp: Path, tag: str, value: str, other: str = "") -> str:
    pkg = tmp / tag / "tiny"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "calc.py").write_text(f"def value():\n    return {value}\n", encoding="utf-8")
    if other:
        (pkg / "other.py").write_text(f"def value():\n    return {other}\n", encoding="utf-8")
    return str(tmp / tag)


def build(tmp: Path, old: str, new: str, other: bool = False) -> bytes:
    report = build_trees(materialize(tree(tmp, f"v{old}", old, old if other else "")),
                         materialize(tree(tmp, f"v{new}", new, new if other else "")))
    assert report.data is not None
    return signed(report.data)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- finding 12: EMFILE

# Imports tiny.calc, then fills its descriptor table up to a low limit and frees exactly
# one descriptor (the agent needs it to accept the connection; every open() after that
# fails with EMFILE). "free" on stdin closes the filler descriptors.
FULL_FD_TABLE = r'''
import os, resource, sys
import suture.agent
suture.agent.start()
from tiny import calc
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
while True:
    try:
        held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == 24, exc
        break
os.close(held.pop())
print("full", len(held), flush=True)
sys.stdin.readline()
for fd in held:
    os.close(fd)
print("freed", flush=True)
sys.stdin.readline()
print("value", calc.value(), flush=True)
sys.stdin.read()
'''


@pytest.mark.slow
def test_a_process_out_of_file_descriptors_gets_emfile_not_a_baseline_mismatch(
        targets: Targets, tmp_path: Path):
    data = build(tmp_path, "1", "2")
    assert all(m.compact for m in load(data).modules)  # its sources come from the target
    proc = targets.start([sys.executable, str(targets.script(FULL_FD_TABLE))],
                         targets.env([str(tmp_path / "v1")]), stdin=subprocess.PIPE)
    sock = targets.wait_agent(proc.pid, proc)
    assert proc.stdout.readline().startswith("full ")

    reply = call(sock, "apply", patch=b64(data))
    assert reply["ok"] is False, reply
    err = reply["error"]
    assert (err["code"], err["error"]) == ("SUT-E640", "SystemCallFailed"), err
    assert err["details"]["errno_name"] == "EMFILE"
    assert err["details"]["path"].endswith(os.path.join("tiny", "calc.py"))
    assert "out of file descriptors" in err["message"]
    assert "Nothing was changed" in err["message"]
    assert "--embed-sources" not in err["message"]
    assert result(sock, "status")["patches"] == []   # nothing changed

    # Once descriptors are free again, the same patch applies: it was never the patch.
    proc.stdin.write("free\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "freed\n"
    assert result(sock, "apply", patch=b64(data))["state"] == "applied"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "value 2\n"
