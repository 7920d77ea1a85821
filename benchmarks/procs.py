"""Processes and ports, shared by the benchmarks and the tests that start real servers
(tests/agent/test_servers.py, tests/tooling/host/test_containers.py,
tests/security/test_identity.py). Standard library only.

The tests import it as ``benchmarks.procs``: pytest runs from the repository's root, which
pyproject's ``pythonpath`` puts on sys.path (``benchmarks`` is a namespace package).
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from typing import List


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> List[int]:
    """The PIDs whose parent is ``pid`` (from /proc/*/stat), sorted."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The fields after the command name, which may hold spaces and parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def first_child(pid: int, timeout: float = 10) -> int:
    """The first child ``pid`` starts (``unshare --fork``'s), waited for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child in {timeout} s")


def answers(port: int, path: str) -> bool:
    """True when GET ``path`` on 127.0.0.1:``port`` answers 200."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False
