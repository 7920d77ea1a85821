"""The threat model as tests (issue 13, docs/security.md "Promises and their tests").

Each test attacks a real agent, a real store or a real server the way an outsider would:
a second user (uid 65534 through ``setpriv``), a real ``unshare`` namespace, a hostile
HTTP server on loopback. Tests that need root skip with the reason elsewhere; CI runs as
root, so there they all run.

The agent tests' helpers (``agentutil``, the ``targets`` fixture) are shared from
tests/agent rather than copied.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from agentutil import Targets  # noqa: E402


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path)
    try:
        yield t
    finally:
        t.close()
