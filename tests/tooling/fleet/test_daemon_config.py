"""daemon.toml, maintenance windows and the per-process view of suture.tooling.fleet.daemon:
the parts that need no live process (those are in test_daemon.py)."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any, Dict

import pytest

from suture.runtime.patchfile import load
from suture.tooling.fleet import daemon
from suture.tooling.fleet.daemon import DaemonConfigError, Window

from signing import make_patch



def write(tmp_path: Path, text: str, mode: int = 0o644) -> str:
    path = tmp_path / "daemon.toml"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_a_full_configuration_loads(tmp_path: Path) -> None:
    cfg = daemon.load_config(write(tmp_path, '''
feeds = ["https://patches.example/feed", "/srv/feed"]
interval = "5m"
ring = "early"
window = "sat,sun 22:00-02:00"
health = "http://127.0.0.1:8080/healthz"
health_interval = "2s"
textfile = "/var/lib/node_exporter/textfile/suture.prom"
metrics_listen = "127.0.0.1:9464"
[delay]
early = "2h"
broad = "1d"
'''))
    assert cfg.feeds == ["https://patches.example/feed", "/srv/feed"]
    assert (cfg.interval, cfg.ring, cfg.health_interval) == (300.0, "early", 2.0)
    assert cfg.delays == {"canary": 0.0, "early": 7200.0, "broad": 86400.0}
    assert cfg.watch == 30.0                      # a health check without watch: 30 s
    assert cfg.metrics_listen == ("127.0.0.1", 9464)
    assert cfg.window == Window((5, 6), 22 * 60, 2 * 60)
    assert cfg.deadline == 300.0                  # download_deadline: 5 min by default


@pytest.mark.parametrize("text, message", [
    ('feeds = []\nrnig = "canary"\n', "unknown field"),
    ('feeds = []\nring = "everyone"\n', "ring must be one of canary, early, broad"),
    ('feeds = "https://x"\n', "feeds must be a list"),
    ('feeds = []\ninterval = "soon"\n', "not a duration"),
    ('feeds = []\n[delay]\nlater = "1h"\n', "delay must map rings"),
    ('feeds = []\nwindow = "nights"\n', "window"),
    ('feeds = []\nwindow = "funday 01:00-02:00"\n', "unknown day"),
    ('feeds = []\nmetrics_listen = "9464"\n', "metrics_listen must be HOST:PORT"),
    ('feeds = [\n', "cannot read"),
    ('feeds = []\ndownload_deadline = "0s"\n', "download_deadline must be more than 0 s"),
    ('feeds = []\ndownload_deadline = "forever"\n', "download_deadline: 'forever' is not a"),
], ids=["typo", "ring", "feeds", "duration", "delay", "window", "day", "listen", "toml",
        "deadline 0", "deadline"])
def test_a_bad_configuration_is_refused_with_its_reason(tmp_path: Path, text: str,
                                                        message: str) -> None:
    with pytest.raises(DaemonConfigError, match=message):
        daemon.load_config(write(tmp_path, text))


def test_a_configuration_others_may_write_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DaemonConfigError, match="lets other users choose which feeds"):
        daemon.load_config(write(tmp_path, "feeds = []\n", 0o666))
    with pytest.raises(DaemonConfigError, match="no daemon configuration"):
        daemon.load_config(str(tmp_path / "missing.toml"))


def local(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """A local time on weekday ``day`` (0 = Monday) of the week of 2026-11-23."""
    return datetime.datetime(2026, 11, 23 + day, hour, minute).astimezone()


def test_windows_by_day_and_over_midnight() -> None:
    daily = Window.parse("02:00-04:00")
    assert daily.contains(local(2, 2, 0)) and daily.contains(local(2, 3, 59))
    assert not daily.contains(local(2, 4, 0)) and not daily.contains(local(2, 1, 59))
    weekend_night = Window.parse("Sat,Sun 22:00-02:00")
    assert weekend_night.contains(local(5, 23))          # Saturday evening
    assert weekend_night.contains(local(6, 1))           # Sunday after midnight (Saturday's)
    assert weekend_night.contains(local(0, 1))           # Monday after midnight (Sunday's)
    assert not weekend_night.contains(local(1, 1))       # Tuesday after midnight
    assert not weekend_night.contains(local(4, 23))      # Friday evening


def test_the_due_rule_of_rings_delays_and_windows() -> None:
    now = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
    entry = {"channels": {"canary": "2026-11-26T09:00:00Z"}}
    cfg = daemon.Config(feeds=[], ring="broad")
    assert daemon._due(entry, cfg, now) == (False, "not released to the broad ring yet")
    cfg = daemon.Config(feeds=[], ring="canary", delays={"canary": 4 * 3600.0})
    assert daemon._due(entry, cfg, now) == (False, "due at 2026-11-26T13:00:00Z "
                                                   "(canary ring delay)")
    cfg.delays["canary"] = 3 * 3600.0
    assert daemon._due(entry, cfg, now) == (True, "due")
    cfg.window = Window((), 0, 1)                        # a window on no day
    assert daemon._due(entry, cfg, now) == (False, "due, waiting for the maintenance window")


def test_the_process_view_names_partial_patches_refusals_and_bad_marks(tmp_path: Path) -> None:
    patch = load(make_patch(tmp_path))
    partial = dataclasses.replace(patch, meta=dict(patch.meta, partial=True,
                                                   excluded=["tiny._speedups"]))
    status: Dict[str, Any] = {"patches": [{"id": patch.id, "processes": [
        {"pid": 1, "state": "fixed", "reason": ""},
        {"pid": 2, "state": "exposed", "reason": "runs tiny 1.1 without this patch"},
        {"pid": 3, "state": "exposed", "reason": "runs tiny 1.1 without this patch"},
        {"pid": 4, "state": "pending import", "reason": "tiny not imported yet"}]}]}
    refused = {f"{patch.id}:2:777": "tiny does not match the baseline"}
    bad = {patch.id: {"reason": "health check failed"}}

    def view(pid: int, known: Any) -> Any:
        (row,) = daemon._process_view(pid, status, refused, {patch.id: known}, bad)
        return row["state"], row["reason"]

    assert view(1, patch) == ("applied", "")
    assert view(1, partial) == ("restart required", "left out of the patch: tiny._speedups")
    assert view(2, patch) == ("refused", "tiny does not match the baseline")
    assert view(3, patch) == ("exposed", "runs tiny 1.1 without this patch; the patch is "
                                         "marked bad on this host (health check failed)")
    assert view(4, patch) == ("pending import", "tiny not imported yet")


def test_check_without_once_is_a_usage_error_and_runs_nothing(tmp_path: Path) -> None:
    # Without --once, `daemon --check` ran the real daemon, every interval.
    from click.testing import CliRunner

    from suture.tooling.cli import main

    path = write(tmp_path, f'feeds = ["{tmp_path / "feed"}"]\n')
    out = CliRunner().invoke(main, ["daemon", "--config", path, "--check"])
    assert out.exit_code == 64, out.output
    assert "--check needs --once" in out.output


def _proc(pid: int, *dists: Dict[str, Any], state: str = "ok", disk: Any = None,
          source: str = "agent", applied: Any = ()) -> Dict[str, Any]:
    return {"pid": pid, "state": state, "reason": "no answer", "applied": list(applied),
            "dists": {} if disk is None else {"urllib3": disk},
            "inventory": {"source": source, "dists": list(dists)}}


def _runs(version: str, on_disk: Any = None, uncertain: bool = False) -> Dict[str, Any]:
    return {"name": "urllib3", "version": version, "version_on_disk": on_disk,
            "version_uncertain": uncertain}


def _check(*procs: Dict[str, Any], hidden: Any = (), verdicts: Any = ()) -> Any:
    status = {"processes": list(procs), "hidden": list(hidden),
              "patches": [{"id": "p1", "processes": list(verdicts)}]}
    return daemon.retire_check(status, "p1", "urllib3", "1.26.17", "1.26.18")


def test_retiring_waits_for_every_process_and_for_the_disk() -> None:
    # Every process runs the fixed release (or a newer one): the patch may retire.
    on_base, other, why = _check(_proc(1, _runs("1.26.18"), disk="1.26.18"),
                                 _proc(2, disk="2.0.7"))
    assert (on_base, other) == ([], [])
    assert why == ("no process runs urllib3 1.26.17; the disk has urllib3 1.26.18, 2.0.7 "
                   "(fixed in 1.26.18) for all 2 process(es) that have it")
    # One still runs the baseline, patched or not, or has it installed and not imported.
    assert _check(_proc(1, _runs("1.26.17", "1.26.18"), disk="1.26.18",
                        applied=[{"id": "p1"}]))[0] == [
        "pid 1 runs urllib3 1.26.17 with the patch"]
    assert _check(_proc(1, _runs("1.26.17", "1.26.18")))[0] == ["pid 1 runs urllib3 1.26.17"]
    assert _check(_proc(1, disk="1.26.17"))[0] == [
        "pid 1 has urllib3 1.26.17 installed (not imported yet)"]
    # The release it runs is not known: kept.
    assert _check(_proc(1, _runs("1.26.18", uncertain=True)))[0] == [
        "pid 1 runs urllib3 1.26.18 (release uncertain)"]
    # A process without an agent that may load the baseline.
    assert _check(_proc(1, _runs("1.26.18")), _proc(2, state="unknown"),
                  verdicts=[{"pid": 2, "state": "exposed"}])[0] == [
        "pid 2 (no agent) may load urllib3 1.26.17"]
    # What could not be seen keeps it: errors, other users' processes, old agents.
    assert _check(_proc(1, _runs("1.26.18")), _proc(2, state="error"))[1] == [
        "pid 2 could not be asked: no answer"]
    assert _check(_proc(1, _runs("1.26.18")), hidden=[{"pid": 3}])[1] == [
        "1 process(es) of other users could not be inspected"]
    assert _check(_proc(1, _runs("1.26.18")), _proc(2, disk="1.26.18", source="dists"))[1] \
        == ["pid 2: which release of urllib3 it runs cannot be told (inventory: dists)"]
    # No process shows the disk's release, or one shows an older one.
    assert _check()[1] == ["no process shows which release of urllib3 is on disk"]
    assert _check(_proc(1, disk="1.26.16"))[1] == [
        "pid 1 has urllib3 1.26.16 on disk, not the fixed 1.26.18 or later"]
