"""benchmarks/fleet end to end, shortened: three hosts in network namespaces, a feed over
HTTP, rings, a killed daemon and a failing health check (docs/fleet.md, "Proof").
Root and iproute2 only; on the 3.11 pass of the suite only (about 30 s)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="network namespaces need root and iproute2"),
    pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="one run per CI is enough"),
]


def test_rings_delays_a_killed_daemon_and_a_failing_health_check(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.fleet", "--seconds-after", "12",
                          "--json", str(out)], cwd=str(ROOT), capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    # The proof keeps its working directory for whoever runs it by hand; a test does not.
    shutil.rmtree(report["work"], ignore_errors=True)
    hosts = report["hosts"]
    for name, h in hosts.items():
        assert h["failed"] == 0 and h["requests"] > 1000 and h["processes"] == 2, (name, h)
        assert h["state_kept"], name
    for name in ("h1", "h2"):
        assert all(not x.startswith(("never", "fixed after")) for x in
                   hosts[name]["fixed_after_release_s"]), hosts[name]
        assert hosts[name]["exposed_metric"] == 0
    # broad hosts wait the 5 s delay after the broad release; canary hosts do not
    assert min(float(x) for x in hosts["h2"]["fixed_after_release_s"]) >= 5.0
    assert max(float(x) for x in hosts["h1"]["fixed_after_release_s"]) < 5.0
    h3 = hosts["h3"]
    # The health watch may revert before any request reaches the fixed code; the audit then
    # says what happened ("applied, then reverted before a request saw it").
    assert all(x.endswith(("then reverted", "before a request saw it"))
               for x in h3["fixed_after_release_s"]), h3
    assert h3["exposed_metric"] == 2 and h3["bad"]["bad"][0]["reason"].startswith(
        "health check failed")
