"""The CVE proof harness (benchmarks/cve) end to end on two real corpus entries.

* Jinja2 3.1.5 -> 3.1.6 (CVE-2025-27516): function bodies and a changed constant;
* starlette 0.39.2 -> 0.40.0 (CVE-2024-47874): a standard-library dataclass whose field
  default becomes a ``default_factory``, generated again on the live class.

Each gets a fresh virtual environment from PyPI with the old release and its test
dependencies, the new release's own regression test laid out from its sdist, and a
long-running process under `suture run`; the test must fail in that process, pass after
`suture apply`, and fail again after `suture revert` (the proof is `suture prove`'s,
tests/tooling/prove/test_prove.py). The whole corpus runs with
`python -m benchmarks.cve` (results in docs/real-world.md); this keeps the machinery
honest in CI. Needs PyPI and uv (scripts/test.sh installs uv); runs on one Python
version only, since the target's Python is the entry's (3.11), not the suite's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Entries copied verbatim from ../shared/corpus/public.json, so CI needs no ../shared.
CORPORA = {"Jinja2==3.1.5": ROOT / "tests" / "data" / "cve-jinja2-3.1.6.json",
           "starlette==0.39.2": ROOT / "tests" / "data" / "cve-starlette-0.40.0.json"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                       reason="one run per CI is enough: the target's Python is the entry's"),
    pytest.mark.skipif(shutil.which("uv") is None, reason="the harness makes venvs with uv"),
]


@pytest.mark.parametrize("only", sorted(CORPORA))
def test_cve_fails_live_passes_after_apply_fails_after_revert(tmp_path: Path, only: str):
    out = tmp_path / "rows.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.cve", str(CORPORA[only]), "--only",
                          only, "--cache", str(tmp_path / "cache"), "--json", str(out)],
                         cwd=str(ROOT), capture_output=True, text=True, timeout=900,
                         env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = json.loads(out.read_text())
    assert row["outcome"] == "met", row
    steps = row["steps"]
    assert steps["build"]["rc"] == 0
    assert steps["before"] == {**steps["before"], "where": "live process", "passed": False}
    assert steps["apply"]["outcome"] == "applied"
    assert steps["after"]["passed"] is True and steps["after"]["rc"] == 0
    assert steps["revert"]["rc"] == 0 and steps["revert"]["outcome"] == "reverted"
    assert steps["reverted"]["passed"] is False
    host = steps["target"]
    assert host["failed"] == {} and host["usage"]["calls"] > 0 and host["usage"]["errors"] == 0
