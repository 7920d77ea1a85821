"""`suture daemon --once` end to end: a feed, real target processes with the agent, the
host's ring, delays and health check (suture.tooling.fleet.daemon)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from suture.runtime import store
from suture.tooling.fleet import feed

import livecli as live
from signing import KEY
from livecli import Target, cli, patch_id, write_dist

# The live processes of tests/livecli.py: its fixtures, used by name.
dists, rundir, state, start_target = live.dists, live.rundir, live.state, live.start_target

pytestmark = pytest.mark.slow


def ago(hours: float) -> str:
    return (datetime.datetime.now(datetime.timezone.utc)
            - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def config(tmp_path: Path, feed_dir: Path, **fields: Any) -> Path:
    lines = [f"feeds = [{json.dumps(str(feed_dir))}]"]
    for key, value in fields.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.insert(1, f"{key} = {json.dumps(value)}")
    path = tmp_path / f"daemon-{len(list(tmp_path.glob('daemon-*')))}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def once(rundir: str, path: Path) -> Dict[str, Any]:
    out = cli(rundir, "daemon", "--config", str(path), "--once", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def view(report: Dict[str, Any], pid: int) -> List[Any]:
    (proc,) = [p for p in report["processes"] if p["pid"] == pid]
    return [(p["state"], p["reason"]) for p in proc["patches"]]


def test_a_patch_reaches_a_host_when_its_ring_and_delay_say_so(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    target = start_target(dists["1.0"])
    fid = patch_id(dists["fix"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, channel="canary", feed="acme", now=ago(2))

    # A broad host: released to canary only, so not even installed.
    report = once(rundir, config(tmp_path, src, ring="broad"))
    (p,) = report["patches"]
    assert (p["id"], p["state"], p["reason"]) == (fid, "waiting",
                                                   "not released to the broad ring yet")
    assert store.installed() == [] and report["applied"] == []

    # Promoted to broad an hour ago; broad hosts wait 2 h after a release.
    feed.publish([dists["fix"]], src, KEY, channel="broad", feed="acme", now=ago(1))
    report = once(rundir, config(tmp_path, src, ring="broad", delay={"broad": "2h"}))
    (p,) = report["patches"]
    assert p["state"] == "waiting" and p["reason"].startswith("due at ")
    assert store.installed() == []
    # synced but not due: not installed, yet its exposure shows while the host waits
    assert view(report, target.pid) == [("exposed", f"runs {live.PKG} 1.0 (imported) "
                                                    "without this patch")]

    # Due: installed, applied to the exposed process, which now runs the fix.
    report = once(rundir, config(tmp_path, src, ring="broad", delay={"broad": "30m"}))
    assert [r["id"] for r in store.installed()] == [fid]
    ((applied,),) = [a["processes"] for a in report["applied"]]
    assert (applied["pid"], applied["outcome"]) == (target.pid, "applied")
    target.wait_for("new")
    assert view(report, target.pid) == [("applied", "")]

    # The next cycle (or a restarted daemon) has nothing to do.
    report = once(rundir, config(tmp_path, src, ring="broad"))
    assert report["applied"] == [] and view(report, target.pid) == [("applied", "")]


def test_a_failed_health_check_reverts_marks_bad_and_stops_the_rollout(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    target = start_target(dists["1.0"])
    fid = patch_id(dists["fix"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme", now=ago(1))
    path = config(tmp_path, src, health="exit 1", watch="1s", health_interval="0.2s")
    report = once(rundir, path)
    (run,) = report["applied"]
    assert run["watch"]["result"] == "failed" and run["watch"]["marked_bad"] is True
    assert [r["outcome"] for r in run["watch"]["reverted"]] == ["reverted"]
    assert target.observed() == "old"
    assert fid in store.bad_patches()

    report = once(rundir, path)
    (p,) = report["patches"]
    assert p["state"] == "waiting" and p["reason"].startswith("marked bad: health check failed")
    assert report["applied"] == []


def test_a_process_that_refuses_is_reported_and_not_asked_again(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    # The release's version, but other code: the agent refuses (baseline mismatch).
    edited = write_dist(tmp_path / "edited", "edited locally", "1.0")
    target = start_target(edited)
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme", now=ago(1))
    path = config(tmp_path, src)
    report = once(rundir, path)
    ((row,),) = [a["processes"] for a in report["applied"]]
    assert (row["pid"], row["outcome"], row["code"]) == (target.pid, "refused", "SUT-E201")
    ((st, why),) = view(report, target.pid)
    assert st == "refused" and "does not match the baseline" in why

    report = once(rundir, path)
    assert report["applied"] == []
    assert view(report, target.pid)[0][0] == "refused"


def test_the_running_daemon_serves_metrics_and_stops_on_sigterm(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    target = start_target(dists["1.0"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme", now=ago(1))
    path = config(tmp_path, src, interval="0.2s", metrics_listen="127.0.0.1:0")
    env = dict(os.environ, PYTHONPATH=str(live.SRC), SUTURE_RUNTIME_DIR=rundir)
    proc = subprocess.Popen([sys.executable, "-m", "suture", "daemon", "--config", str(path)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            line = proc.stderr.readline()
            assert line and time.monotonic() < deadline, "no metrics address logged"
            m = re.search(r"metrics on (http://\S+/metrics)", line)
            url = m.group(1) if m else None
        target.wait_for("new")
        while True:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}
            if values.get(("suture_exposed_processes", (("cve", "CVE-2099-101"),))) == 0:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert values[("suture_feed_index_version", (("feed", "acme"),))] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_check_says_exactly_what_the_next_cycle_does_and_changes_nothing(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    # The case: a due patch the host has not synced yet, and exposed processes.
    # --check said it would apply nothing (it neither synced nor counted what it would
    # install), and the next --once applied to every exposed process.
    exposed = [start_target(dists["1.0"]) for _ in range(3)]
    other = start_target(dists["2.0"])          # another release: not affected
    fid = patch_id(dists["fix"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme", now=ago(1))
    path = config(tmp_path, src)

    out = cli(rundir, "daemon", "--config", str(path), "--once", "--check", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    check = json.loads(out.stdout)
    assert check["dry_run"] is True and check["applied"] == []
    (p,) = check["patches"]
    assert (p["id"], p["reason"]) == (fid, "would install")
    ((would,),) = [[w] for w in check["would_apply"]]
    assert would["patch"] == fid
    assert sorted(would["pids"]) == sorted(t.pid for t in exposed)
    # nothing changed: nothing installed, synced, applied or written
    assert store.installed() == [] and not (state / "feeds").exists()
    assert not (state / "daemon.json").exists()
    assert [t.observed() for t in exposed] == ["old"] * 3

    # Without --json: text for people, the same facts.
    out = cli(rundir, "daemon", "--config", str(path), "--once", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(", ring broad: --check, nothing was changed"), out.stdout
    assert f"  {fid[:12]}  {live.PKG} 1.0\u21921.1  CVE-2099-101  would install" \
        in lines, out.stdout
    assert f"  {fid[:12]} to 3 processes: " in out.stdout, out.stdout
    assert not out.stdout.lstrip().startswith(("{", "["))

    # The cycle then does exactly that.
    report = once(rundir, path)
    ((run,),) = [[a] for a in report["applied"]]
    assert run["patch"] == fid
    assert sorted((r["pid"], r["outcome"]) for r in run["processes"]) \
        == sorted((t.pid, "applied") for t in exposed)
    for t in exposed:
        t.wait_for("new")
    assert other.observed() == "old"
    assert view(report, other.pid)[0][0] == "not affected"

    # And a check now says there is nothing left to do, as the next cycle finds.
    out = cli(rundir, "daemon", "--config", str(path), "--once", "--check")
    assert out.returncode == 0 and "would apply: nothing" in out.stdout, out.stdout


def test_a_retired_feed_patch_is_not_installed_again_until_its_baseline_runs_again(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    old = start_target(dists["1.0"])
    fid = patch_id(dists["fix"])
    src = tmp_path / "feed"
    feed.publish([dists["fix"]], src, KEY, feed="acme", now=ago(1))
    path = config(tmp_path, src)
    report = once(rundir, path)
    assert [r["id"] for r in store.installed()] == [fid] and report["retired"] == []
    (kept,) = report["kept"]
    assert kept["reasons"][0] == f"pid {old.pid} runs {live.PKG} 1.0 with the patch"

    # The fixed release runs, and nothing runs 1.0: retired, and not installed again.
    old.proc.kill()
    old.proc.wait()
    fixed = start_target(write_dist(tmp_path / "1.1", "new", "1.1"))
    report = once(rundir, path)
    (retired,) = report["retired"]
    assert retired["patch"] == fid and retired["reason"].startswith(
        f"no process runs {live.PKG} 1.0; the disk has {live.PKG} 1.1")
    assert store.installed() == []
    report = once(rundir, path)
    (p,) = report["patches"]
    assert p["state"] == "waiting" and p["reason"].startswith("retired at ")
    assert store.installed() == [] and report["retired"] == []
    assert view(report, fixed.pid) == [("not affected", f"runs {live.PKG} 1.1 (the fixed "
                                                        "release); the patch is for 1.0")]

    # A process on 1.0 again: the mark goes, and the next cycle installs and applies it.
    again = start_target(dists["1.0"])
    report = once(rundir, path)
    assert view(report, again.pid)[0][0] == "exposed"
    report = once(rundir, path)
    assert [r["id"] for r in store.installed()] == [fid]
    ((applied,),) = [a["processes"] for a in report["applied"]]
    assert (applied["pid"], applied["outcome"]) == (again.pid, "applied")
    again.wait_for("new")
