"""Issue 18, item 4: restart debt, and the daemon retiring a patch no process needs.

A real process runs urllib3 1.26.17 (the wheel in tests/data) with the CVE-2023-45803
patch applied and installed. `pip install -U` is done as pip does it, under the running
process: the disk then holds 1.26.18, the process still runs 1.26.17, hot-patched.
`suture status` names it as restart debt (held for some time; not exposed), and
`suture metrics` counts it. The daemon keeps the installed patch while that process runs
the baseline; once it is restarted on 1.26.18, `--check` says it would retire the patch,
and the next cycle does: out of the store, with an audit row that says why.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

import livecli
import urllib3live
from livecli import cli, patch_id
from suture.runtime import store

pytestmark = pytest.mark.slow

rundir, state = livecli.rundir, livecli.state

DATA, CVE = urllib3live.DATA, urllib3live.CVE


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    return urllib3live.releases(tmp_path_factory)


@pytest.fixture
def start(rundir: str, tmp_path: Path) -> Iterator[Any]:
    with urllib3live.targets(rundir, tmp_path) as run:
        yield run


def status(rundir: str, pid: int) -> Dict[str, Any]:
    r = cli(rundir, "status", "--json", "--pid", str(pid))
    report: Dict[str, Any] = json.loads(r.stdout)
    assert report["exit_code"] == r.returncode, r.stderr
    return report


def daemon(rundir: str, config: Path, *extra: str) -> Dict[str, Any]:
    r = cli(rundir, "daemon", "--config", str(config), "--once", "--json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def upgrade(root: Path, new: Path) -> None:
    """`pip install -U` as it does it: the old files and dist-info go, the new ones come."""
    shutil.rmtree(root / "urllib3")
    shutil.rmtree(root / "urllib3-1.26.17.dist-info")
    shutil.copytree(new / "urllib3", root / "urllib3")
    shutil.copytree(new / "urllib3-1.26.18.dist-info", root / "urllib3-1.26.18.dist-info")


def test_restart_debt_is_reported_and_the_daemon_retires_the_patch_after_the_restart(
        releases: Dict[str, Any], start: Any, rundir: str, state: Path,
        tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(releases["old"], root)
    ident = patch_id(releases["patch"])
    config = tmp_path / "daemon.toml"
    config.write_text("feeds = []\n")     # no feed: only the store's patch is in play
    target = start(root)
    r = cli(rundir, "apply", str(releases["patch"]), "--pid", str(target.pid))
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli(rundir, "install", str(releases["patch"]))
    assert r.returncode == 0, r.stdout + r.stderr

    # The disk still has 1.26.17: the patch is the fix, no debt, nothing to retire.
    report = status(rundir, target.pid)
    assert report["restart_debt"] == [] and report["exit_code"] == 0
    check = daemon(rundir, config, "--check")
    assert check["would_retire"] == [] and check["retired"] == []
    assert check["kept"] == [{"patch": ident, "reasons": [
        f"pid {target.pid} runs urllib3 1.26.17 with the patch",
        f"pid {target.pid} has urllib3 1.26.17 on disk, not the fixed 1.26.18 or later"]}]

    # Upgraded under the running process: it owes a restart.
    upgrade(root, releases["new"])
    report = status(rundir, target.pid)
    assert report["exit_code"] == 0                   # fixed in memory: not exposed
    (debt,) = report["restart_debt"]
    assert {k: debt[k] for k in ("pid", "patch", "distribution", "version_running",
                                 "version_on_disk", "fixed_in")} == {
        "pid": target.pid, "patch": ident, "distribution": "urllib3",
        "version_running": "1.26.17", "version_on_disk": "1.26.18", "fixed_in": "1.26.18"}
    assert debt["held_for"] > 0
    assert debt["fix"] == (f"restart PID {target.pid} to run 1.26.18 from disk; the hot "
                           "patch can then retire")
    (proc,) = report["processes"]
    assert proc["restart_debt"] == [debt]
    text = cli(rundir, "status", "--pid", str(target.pid))
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^ +{target.pid}  urllib3 1\.26\.17 \(on disk: 1\.26\.18\)  patch "
                     rf"{ident[:12]} held for \d+s$", text.stdout, re.M), text.stdout
    assert f"fix: {debt['fix']}" in text.stdout
    r = cli(rundir, "metrics")
    assert r.returncode == 0, r.stderr
    labels = f'{{package="urllib3",patch="{ident[:12]}"}}'
    assert f"suture_restart_debt_processes{labels} 1\n" in r.stdout, r.stdout
    m = re.search(rf"^suture_restart_debt_seconds{re.escape(labels)} (\S+)$", r.stdout, re.M)
    assert m and float(m.group(1)) > 0, r.stdout
    # The daemon keeps the patch: that process still runs the baseline.
    check = daemon(rundir, config, "--check")
    assert check["would_retire"] == []
    assert check["kept"] == [{"patch": ident, "reasons": [
        f"pid {target.pid} runs urllib3 1.26.17 with the patch"]}]
    assert daemon(rundir, config)["retired"] == []
    assert [p["id"] for p in store.installed()] == [ident]

    # Restarted: it runs 1.26.18 from disk (its agent refuses the installed patch, whose
    # baseline it does not run), and nothing runs 1.26.17 any more.
    start.stop(target)
    restarted = start(root)
    report = status(rundir, restarted.pid)
    assert report["restart_debt"] == [] and report["exit_code"] == 0
    (proc,) = report["processes"]
    assert proc["applied"] == [] and proc["dists"] == {"urllib3": "1.26.18"}

    out = cli(rundir, "daemon", "--config", str(config), "--once", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "would retire:" in out.stdout and f"  {ident[:12]}  no process runs urllib3 " \
        "1.26.17" in out.stdout, out.stdout
    check = daemon(rundir, config, "--check")
    (would,) = check["would_retire"]
    assert would == {"patch": ident, "reason": "no process runs urllib3 1.26.17; the disk "
                     "has urllib3 1.26.18 (fixed in 1.26.18) for all 1 process(es) that "
                     "have it"}
    assert [p["id"] for p in store.installed()] == [ident]      # --check changed nothing

    done = daemon(rundir, config)
    assert done["retired"] == [would]
    assert store.installed() == []
    (row,) = [a for a in store.audit_log() if a["op"] == "retire"]
    assert (row["patch_id"], row["result"]) == (ident, "retired")
    assert row["detail"] == f"daemon: {would['reason']}"
    again = daemon(rundir, config)
    assert again["retired"] == again["kept"] == []               # nothing left to retire
