"""Fixtures for the agent tests; the helpers are in agentutil.py."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from agentutil import Targets


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path)
    try:
        yield t
    finally:
        t.close()
