"""Helpers for the agent tests (imported as `agentutil`): real target processes, a minimal protocol client.

Every test gets its own SUTURE_RUNTIME_DIR under tmp_path. Targets are fresh
``sys.executable`` processes; we wait for files and sockets by polling with a
deadline (never a fixed sleep) and kill every process we started in finally.
The client here is deliberately tiny and independent of suture.tooling.host.client:
these tests pin the wire format itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
DEADLINE = 30.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE,
             proc: Optional[subprocess.Popen] = None) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"target exited ({proc.returncode}) while waiting for {what}:\n"
                        f"--- stdout\n{out}\n--- stderr\n{err}")
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def exchange(path: str, payload: bytes, *, timeout: float = DEADLINE) -> bytes:
    """Send raw bytes, half-close, return everything the agent answers (b"" if dropped)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent may answer (a refusal) and close before reading: read it anyway
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def call(path: str, op: str, **fields: Any) -> Dict[str, Any]:
    raw = exchange(path, json.dumps({"v": 1, "op": op, **fields}).encode() + b"\n")
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
    return json.loads(raw)  # type: ignore[no-any-return]


def result(path: str, op: str, **fields: Any) -> Any:
    reply = call(path, op, **fields)
    assert reply["ok"] is True, reply
    return reply["result"]


class Targets:
    """Start target processes; kill them all (and any pids they report) at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rundir = root / "run"
        self.procs: List[subprocess.Popen] = []
        self.extra_pids: List[int] = []
        self._n = 0

    def env(self, pythonpath: List[str] = (), **extra: str) -> Dict[str, str]:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", SUTURE_RUNTIME_DIR=str(self.rundir),
                   SUTURE_STATE_DIR=str(self.root / "state"),
                   PYTHONPATH=os.pathsep.join([str(SRC), *map(str, pythonpath)]))
        for k in ("SUTURE_AGENT", "PYTHONSTARTUP", "PYTHONWARNINGS"):
            env.pop(k, None)
        env.update(extra)
        return env

    def script(self, text: str) -> Path:
        self._n += 1
        path = self.root / f"target_{self._n}.py"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def start(self, argv: List[str], env: Dict[str, str], cwd: Optional[Path] = None,
              stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, cwd=str(cwd or self.root), stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def sock(self, pid: int) -> str:
        return str(self.rundir / f"{pid}.sock")

    def wait_agent(self, pid: int, proc: Optional[subprocess.Popen] = None) -> str:
        path = self.sock(pid)
        wait_for(lambda: os.path.exists(path), f"agent socket {path}", proc=proc)
        return path

    def close(self) -> None:
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except Exception:  # noqa: BLE001
                pass
