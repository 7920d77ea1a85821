"""The host daemon: sync feeds, install patches when due, apply them to running processes.

One ``cycle`` (docs/fleet.md, "Host daemon"):

1. for each configured feed, one after another: sync it (``feed.sync``, all its
   downloads under ``download_deadline``) into its mirror; a failure is recorded with
   its code in the report and the log, and never stops the other feeds;
2. then, from that feed's mirror only, each patch its current index lists: due when it
   was released to this host's ring (or an earlier one) at least ``delay[ring]`` ago,
   inside the maintenance window if one is set, and not marked bad. A due patch is
   installed in the store (so agents of processes started later apply it) if the
   mirrored file is exactly the entry's patch (sha256 and id) and trusted on its own
   (``feed.mirror_patch``);
3. every process still exposed to an installed patch gets it (``rollout.apply_watched``:
   with ``health``, watched, reverted everywhere and marked bad on failure). A process
   that refused a patch is not asked again for that patch (the refusal stays in the
   daemon's state, keyed by pid and start time, so a new process with a reused pid is);
4. an installed patch that no process needs any more is retired (``_retire``: removed
   from the store, audited ``retire``/``retired`` with why; a feed's retired patch is
   not installed again while that holds);
5. the per-process view is written to ``<state dir>/daemon.json`` and, if configured,
   the Prometheus textfile.

The daemon holds nothing in memory that matters: the store (installs, audit, bad marks),
the mirrors and ``daemon.json`` say where it was, so a restarted daemon carries on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from packaging.utils import canonicalize_name

from ...runtime import store
from ...runtime.errors import SutureError
from ...runtime.patchfile import load
from . import feed, fanout, rollout
from .. import trust

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 by the same tests
    import tomli as tomllib

CONFIG_FILE = "daemon.toml"
STATE_FILE = "daemon.json"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_WINDOW = re.compile(r"^(?:(?P<days>[A-Za-z,]+)\s+)?(?P<a>\d\d):(?P<b>\d\d)-(?P<c>\d\d):(?P<d>\d\d)$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DaemonConfigError(trust.TrustPolicyError):
    """``daemon.toml`` cannot be used (unsafe file, not TOML, a bad field)."""

    code = "SUT-E115"


def duration(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise DaemonConfigError(f"{what}: {value!r} is not a duration like 30s, 5m, 2h, 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Window:
    """Daily (or on some weekdays) local-time window, e.g. ``"sat,sun 02:00-04:00"``."""
    days: Tuple[int, ...]
    start: int               # minutes after midnight
    end: int

    @classmethod
    def parse(cls, text: str) -> "Window":
        m = _WINDOW.match(text.strip())
        if not m:
            raise DaemonConfigError(f"window: {text!r} is not like \"02:00-04:00\" or "
                                    "\"sat,sun 02:00-04:00\"")
        names = [d.strip().lower()[:3] for d in (m.group("days") or "").split(",") if d.strip()]
        if any(n not in _DAYS for n in names):
            raise DaemonConfigError(f"window: unknown day in {text!r}")
        start = int(m.group("a")) * 60 + int(m.group("b"))
        end = int(m.group("c")) * 60 + int(m.group("d"))
        if not (0 <= start < 1440 and 0 < end <= 1440 and start != end):
            raise DaemonConfigError(f"window: {text!r} is not a time range")
        return cls(tuple(_DAYS.index(n) for n in names) or tuple(range(7)), start, end)

    def contains(self, when: _dt.datetime) -> bool:
        local = when.astimezone()
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= minute < self.end
        # over midnight: the part after midnight belongs to the previous day's window
        if minute >= self.start:
            return local.weekday() in self.days
        return minute < self.end and (local.weekday() - 1) % 7 in self.days


@dataclass
class Config:
    feeds: List[str]
    interval: float = 300.0
    ring: str = "broad"
    delays: Dict[str, float] = field(default_factory=lambda: {c: 0.0 for c in feed.CHANNELS})
    window: Optional[Window] = None
    health: Optional[str] = None
    watch: float = 0.0
    health_interval: float = 1.0
    textfile: Optional[Path] = None
    metrics_listen: Optional[Tuple[str, int]] = None     # serve /metrics here
    deadline: float = feed.DEADLINE     # per feed and cycle: all of its downloads
    path: str = ""


def config_path() -> str:
    return os.path.join(trust.config_dir(), CONFIG_FILE)


def load_config(path: Optional[str] = None) -> Config:
    path = path or config_path()
    try:
        with trust.open_owned(path, "the daemon configuration",
                              "choose which feeds and health checks this host uses",
                              DaemonConfigError) as f:
            raw = tomllib.load(f)
    except FileNotFoundError as exc:
        raise DaemonConfigError(f"no daemon configuration at {path} (docs/fleet.md)",
                                details={"path": path}) from exc
    except DaemonConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise DaemonConfigError(f"cannot read {path}: {exc}", details={"path": path}) from exc
    known = {"feeds", "interval", "ring", "delay", "window", "health", "watch",
             "health_interval", "textfile", "metrics_listen", "download_deadline"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DaemonConfigError(f"{path}: unknown field(s) {', '.join(unknown)}",
                                details={"path": path, "unknown": unknown})
    feeds = raw.get("feeds", [])
    if not isinstance(feeds, list) or not all(isinstance(f, str) for f in feeds):
        raise DaemonConfigError(f"{path}: feeds must be a list of URLs or directories")
    ring = raw.get("ring", "broad")
    if ring not in feed.CHANNELS:
        raise DaemonConfigError(f"{path}: ring must be one of {', '.join(feed.CHANNELS)}")
    delay = raw.get("delay", {})
    if not isinstance(delay, dict) or set(delay) - set(feed.CHANNELS):
        raise DaemonConfigError(f"{path}: delay must map rings ({', '.join(feed.CHANNELS)}) "
                                "to durations")
    cfg = Config(feeds=list(feeds), ring=ring, path=path,
                 interval=duration(raw.get("interval", "5m"), "interval"),
                 watch=duration(raw.get("watch", 0), "watch"),
                 health_interval=duration(raw.get("health_interval", 1), "health_interval"),
                 deadline=duration(raw.get("download_deadline", feed.DEADLINE),
                                   "download_deadline"))
    if cfg.deadline <= 0:
        raise DaemonConfigError(f"{path}: download_deadline must be more than 0 s")
    cfg.delays.update({k: duration(v, f"delay.{k}") for k, v in delay.items()})
    if raw.get("window"):
        cfg.window = Window.parse(str(raw["window"]))
    if raw.get("health"):
        cfg.health = str(raw["health"])
        cfg.watch = cfg.watch or 30.0
    if raw.get("textfile"):
        cfg.textfile = Path(str(raw["textfile"]))
    if raw.get("metrics_listen"):
        host, _, port = str(raw["metrics_listen"]).rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:   # 0: any port
            raise DaemonConfigError(f"{path}: metrics_listen must be HOST:PORT, like "
                                    "127.0.0.1:9464")
        cfg.metrics_listen = (host.strip("[]"), int(port))
    return cfg


# ------------------------------------------------------------------------------- a cycle

def _state_path() -> Path:
    return Path(store.state_dir()) / STATE_FILE


def _read_state() -> Dict[str, Any]:
    try:
        state = json.loads(_state_path().read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _due(entry: Dict[str, Any], cfg: Config, now: _dt.datetime) -> Tuple[bool, str]:
    released = feed.released(entry, cfg.ring)
    if released is None:
        return False, f"not released to the {cfg.ring} ring yet"
    due = feed.parse_time(released) + _dt.timedelta(seconds=cfg.delays.get(cfg.ring, 0.0))
    if now < due:
        return False, f"due at {due.strftime('%Y-%m-%dT%H:%M:%SZ')} ({cfg.ring} ring delay)"
    if cfg.window is not None and not cfg.window.contains(now):
        return False, "due, waiting for the maintenance window"
    return True, "due"


def cycle(cfg: Config, *, now: Optional[_dt.datetime] = None,
          policy: Optional[trust.Policy] = None, dry_run: bool = False,
          log: Callable[[str], None] = lambda _: None) -> Dict[str, Any]:
    """One pass: sync, install what is due, apply to exposed processes. Returns the report
    also written to ``daemon.json``.

    ``dry_run`` (``--once --check``) computes exactly what this cycle would do, through the
    same steps, and changes nothing: each feed is synced into a throw-away copy of its
    mirror (what is missing is downloaded there), a patch that would be installed says
    ``would install`` and counts as installed for step 3, and ``would_apply`` lists, per
    patch, the processes that step 3 would patch; nothing is installed, applied or
    written in the state directory. Before issue 18 the check neither synced nor counted
    the patches it would install, so it said "nothing to apply" where the cycle then
    applied a patch to every exposed process."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    policy = policy if policy is not None else trust.load_policy()
    state = _read_state()
    refused: Dict[str, str] = dict(state.get("refused") or {})
    retired: Dict[str, Any] = dict(state.get("retired") or {})
    report: Dict[str, Any] = {"at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "ring": cfg.ring,
                              "dry_run": dry_run, "feeds": [], "patches": [], "applied": [],
                              "would_apply": [], "retired": [], "would_retire": [], "kept": [],
                              "processes": []}
    bad = store.bad_patches()
    installed = {row["id"] for row in store.installed()}
    mirrored: Dict[str, bytes] = {}
    would_install: Dict[str, Tuple[bytes, Any]] = {}
    staging = tempfile.TemporaryDirectory(prefix="suture-check-") if dry_run else None
    try:
        for source in cfg.feeds:
            # One feed at a time, synced then installed from: a feed that is down, slow
            # (bounded by its deadline) or hostile delays the others by at most its
            # deadline and never stops them (issue 13, findings 5 and 6); its error is
            # in the report.
            mirror = (_staged_mirror(source, Path(staging.name)) if staging is not None
                      else feed.mirror_dir(source))
            _sync_feed(source, cfg, policy, report, mirror, log)
            _install_due(source, mirror, cfg, policy, report, log, now, bad, installed,
                         mirrored, would_install if dry_run else None, retired)
        _apply_exposed(cfg, report, refused, log, dry_run, mirrored, would_install)
        _retire(report, retired, log, dry_run)
    finally:
        if staging is not None:
            staging.cleanup()
    if dry_run:
        report.pop("status", None)
        return report
    state = {"at": report["at"], "refused": refused, "retired": retired, "report": report}
    feed._write_atomic(_state_path(), json.dumps(state, indent=1).encode("utf-8"), 0o600)
    if cfg.textfile is not None or cfg.metrics_listen is not None:
        from . import metrics
        text = metrics.render(report["status"], store.audit_log(),
                              metrics.feed_states(Path(store.state_dir()) / "feeds"))
        report["metrics"] = text
        if cfg.textfile is not None:
            metrics.write_textfile(cfg.textfile, text)
    report.pop("status", None)
    return report


def _staged_mirror(source: str, staging: Path) -> Path:
    """A copy of ``source``'s mirror in ``staging`` (empty when never synced), for a dry
    run to sync into and install from as the cycle would from the mirror itself."""
    real = feed.mirror_dir(source)
    copy = staging / real.name
    if real.is_dir():
        shutil.copytree(real, copy)
    else:
        copy.mkdir(mode=0o700)
    return copy


def _sync_feed(source: str, cfg: Config, policy: trust.Policy, report: Dict[str, Any],
               mirror: Path, log: Callable[[str], None]) -> None:
    try:
        synced = feed.sync(source, policy=policy, now=report["at"], deadline=cfg.deadline,
                           mirror=mirror)
    except SutureError as exc:      # every failure of a feed's input is one (feed.py)
        report["feeds"].append({"source": source, "ok": False, "error": exc.message,
                                "code": exc.code})
        log(f"sync {source}: {exc}")
        return
    report["feeds"].append({"source": source, "feed": synced["feed"],
                            "version": synced["version"], "ok": synced["recorded"],
                            "refused": [r["id"] for r in synced["patches"]
                                        if r["outcome"] == "refused"],
                            "failed": [r["id"] for r in synced["patches"]
                                       if r["outcome"] == "failed"]})


def _install_due(source: str, mirror: Path, cfg: Config, policy: trust.Policy,
                 report: Dict[str, Any], log: Callable[[str], None], now: _dt.datetime,
                 bad: Dict[str, Any], installed: Set[str], mirrored: Dict[str, bytes],
                 would_install: Optional[Dict[str, Tuple[bytes, Any]]],
                 retired: Optional[Dict[str, Any]] = None) -> None:
    """Install what is due from ``mirror``, the mirror of the configured feed ``source``.

    Only mirrors of feeds configured now are read (a feed removed from daemon.toml is
    not installed from any more), only what their current index lists, and only a file
    that is exactly the entry's patch (id and sha256, ``feed.mirror_patch``): issue 13,
    finding 8. A patch marked bad is never installed, nor one this daemon retired (until
    a process runs its baseline again: ``_retire``). A dry run passes
    ``would_install``, which gets what would be installed, instead of the store."""
    try:
        index = feed.read_index((mirror / feed.INDEX_FILE).read_bytes(), policy,
                                report["at"], where=f"mirrored in {mirror}")
    except FileNotFoundError:
        return                          # never synced completely: nothing to install yet
    except (OSError, SutureError) as exc:
        log(f"{mirror}: {getattr(exc, 'message', exc)}")
        return
    for entry in index.patches:
        row = {"id": entry["id"], "feed": index.feed, "source": source,
               "target": entry["target"], "cves": entry["cves"]}
        ok, why = _due(entry, cfg, now)
        if ok and entry["id"] in bad:
            ok, why = False, f"marked bad: {bad[entry['id']]['reason']}"
        if ok and retired and entry["id"] in retired and entry["id"] not in installed:
            ok, why = False, f"retired at {retired[entry['id']]['at']}"
        try:
            data, record = feed.mirror_patch(mirror, entry, policy)
        except (OSError, SutureError) as exc:
            data, record = b"", None
            if ok and entry["id"] not in installed:
                ok, why = False, f"not installed: {getattr(exc, 'message', exc)}"
        if ok and entry["id"] not in installed and would_install is not None:
            ok, why = False, "would install"
            would_install[entry["id"]] = (data, record)
        elif ok and entry["id"] not in installed:
            try:
                store.install(data, record)
                store.audit("install", entry["id"], "installed", os.getpid(),
                            os.getuid(), f"daemon, ring {cfg.ring}, feed {source}")
                installed.add(entry["id"])
                row["installed_now"] = True
                log(f"installed {entry['id'][:12]} ({feed.describe(entry['target'])})")
            except (OSError, SutureError) as exc:
                ok, why = False, f"not installed: {getattr(exc, 'message', exc)}"
        if not ok and data and entry["id"] not in (would_install or {}):
            mirrored[entry["id"]] = data
        report["patches"].append(dict(row, state="installed" if ok else "waiting",
                                      reason="" if ok else why))


def _apply_exposed(cfg: Config, report: Dict[str, Any], refused: Dict[str, str],
                   log: Callable[[str], None], dry_run: bool = False,
                   mirrored: Optional[Dict[str, bytes]] = None,
                   would_install: Optional[Dict[str, Tuple[bytes, Any]]] = None) -> None:
    """Apply installed patches to the processes exposed to them. Patches synced but not
    due yet (``mirrored``) count in the status too, so their exposure shows (metrics,
    ``daemon.json``) while the host waits for them; those a dry run would install
    (``would_install``) count as installed."""
    files: Dict[str, Tuple[bytes, Any, Optional[str]]] = {}
    bad = store.bad_patches()
    for data, record in [*store.load_installed(), *(would_install or {}).values()]:
        if record is not None:          # agents refuse rows without a trust record too
            patch = load(data)
            files[patch.id] = (data, patch, record.get("restricted_to"))
    known = {pid: patch for pid, (_, patch, _) in files.items()}
    for pid, data in (mirrored or {}).items():
        try:
            known.setdefault(pid, load(data))
        except SutureError:
            continue
    for pid in bad:                     # installed, then marked bad: never applied again
        files.pop(pid, None)
    status = fanout.status(patches=list(known.values()))
    for entry in status["patches"]:
        if entry["id"] not in files:
            continue
        data, patch, restricted_to = files[entry["id"]]
        targets = []
        for proc in entry["processes"]:
            key = f"{entry['id']}:{proc['pid']}:{rollout.start_time(proc['pid'])}"
            # (a process without an agent cannot be applied to: status names it; nor one
            # with an interpreter its agent cannot reach, which refuses every apply,
            # SUT-E219: it needs a restart, which status names)
            if (proc["state"] == "exposed" and proc.get("agent", True) and key not in refused
                    and not proc.get("uninspectable")):
                targets.append(proc["pid"])
        if not targets:
            continue
        if dry_run:
            report["would_apply"].append({"patch": entry["id"], "pids": targets})
            continue
        check = rollout.HealthCheck(cfg.health) if cfg.health else None
        done = rollout.apply_watched(data, patch, targets, check=check,
                                     watch_s=cfg.watch or None, interval=cfg.health_interval,
                                     restricted_to=restricted_to)
        for r in done.rows:
            if r.outcome == "refused":
                refused[f"{entry['id']}:{r.pid}:{rollout.start_time(r.pid)}"] = r.reason
        report["applied"].append({"patch": entry["id"], **done.to_dict()})
        log(f"applied {entry['id'][:12]} to {len(targets)} process(es): "
            + ", ".join(f"{r.pid} {r.outcome}"
                        + (" (RECORDED IN NO AUDIT LOG)" if r.unaudited else "")
                        for r in done.rows)
            + (f"; watch {done.watch.result}" if done.watch else ""))
    # With every process's inventory: _retire needs the release each one runs.
    status = fanout.status(patches=list(known.values()), inventory=True)
    report["status"] = status
    for proc in status["processes"]:
        if proc["state"] == "unknown":
            continue
        report["processes"].append({"pid": proc["pid"], "command": proc["command"],
                                    "patches": _process_view(proc["pid"], status, refused,
                                                             known, bad)})


# -- retiring patches (issue 18, item 4) ----------------------------------------------
#
# An installed patch serves processes that start later (their agents apply it) and is the
# record of what the host protects. Once the fixed release is on disk and every process
# runs it, it serves nothing: it is retired, so `suture list` and the status stop carrying
# it. Retiring removes it from the store only; a process that still holds it keeps it.
# The rule is conservative, since keeping a patch costs little and retiring one early
# leaves a process that starts on the old release unpatched: nothing is retired while a
# process could not be asked, another user's process could not be seen, a process
# (with or without an agent) may run the baseline, or no process shows the disk's
# release. A feed's patch this daemon retired is not installed again while it stays
# retired; the mark is dropped (and the next cycle installs it) as soon as a process
# runs the baseline again.

def retire_check(status: Dict[str, Any], patch_id: str, name: str, base: str,
                 fixed: str) -> Tuple[List[str], List[str], str]:
    """Whether the patch ``patch_id`` (``name`` ``base``→``fixed``) may retire, from a
    ``fanout.status(..., inventory=True)`` report: (processes that may run the baseline,
    other reasons to keep it, why it may retire when both are empty)."""
    want = canonicalize_name(name)
    on_base: List[str] = []
    other: List[str] = []
    disks: Dict[str, List[int]] = {}
    hidden = status.get("hidden") or []
    if hidden:
        other.append(f"{len(hidden)} process(es) of other users could not be inspected")
    entry = next((e for e in status["patches"] if e["id"] == patch_id), None)
    for p in status["processes"]:
        pid = p["pid"]
        if p["state"] == "error":
            other.append(f"pid {pid} could not be asked: {p['reason']}")
            continue
        if p["state"] == "unknown":     # no agent: judged from outside (fanout.agentless)
            verdicts = [r for r in (entry or {}).get("processes") or [] if r["pid"] == pid]
            if any(r["state"] == "exposed" for r in verdicts):
                on_base.append(f"pid {pid} (no agent) may load {name} {base}")
            continue
        inv = p.get("inventory") or {}
        disk = fanout._dist_version(p.get("dists") or {}, name)
        if p.get("uninspectable") and disk is not None:
            # an interpreter its agent cannot reach may run the baseline (issue 22)
            other.append(f"pid {pid}: an interpreter could not be inspected, so which "
                         f"release of {name} it runs there cannot be told")
        if inv.get("source") != "agent":
            if disk is not None:
                other.append(f"pid {pid}: which release of {name} it runs cannot be told "
                             f"(inventory: {inv.get('source')})")
            continue
        runs = [d for d in inv.get("dists") or []
                if canonicalize_name(str(d["name"])) == want]
        for d in runs:
            if d.get("version_uncertain") or fanout._same_version(d["version"], base):
                held = any(str(a.get("id")) == patch_id for a in p["applied"])
                on_base.append(f"pid {pid} runs {name} {d['version']}"
                               + (" (release uncertain)" if d.get("version_uncertain")
                                  else "") + (" with the patch" if held else ""))
            disks.setdefault(str(d.get("version_on_disk") or d["version"]), []).append(pid)
        if not runs and disk is not None:
            if fanout._same_version(disk, base):
                on_base.append(f"pid {pid} has {name} {base} installed (not imported yet)")
            disks.setdefault(str(disk), []).append(pid)
    fixed_v = fanout._version(fixed)
    if not disks:
        other.append(f"no process shows which release of {name} is on disk")
    for version, pids in sorted(disks.items()):
        v = fanout._version(version)
        if fixed_v is None or v is None or v < fixed_v:
            other.append(f"pid {', '.join(map(str, sorted(set(pids))))} has {name} {version} "
                         f"on disk, not the fixed {fixed} or later")
    count = len({pid for pids in disks.values() for pid in pids})
    why = (f"no process runs {name} {base}; the disk has {name} "
           f"{', '.join(sorted(disks))} (fixed in {fixed}) for all {count} process(es) "
           f"that have it")
    return on_base, other, why


def _retire(report: Dict[str, Any], retired: Dict[str, Any], log: Callable[[str], None],
            dry_run: bool) -> None:
    """Retire the installed patches no process needs (comment above); a dry run lists
    them in ``would_retire`` instead; ``kept`` says why each other one stays. Drops the
    mark of retired patches whose baseline runs again."""
    status = report["status"]
    for row in store.installed():
        if not (row["from_version"] and row["to_version"] and row["target_name"]):
            continue        # not built from two releases: whether it is needed is unknown
        on_base, other, why = retire_check(status, row["id"], row["target_name"],
                                           row["from_version"], row["to_version"])
        if on_base or other:
            report["kept"].append({"patch": row["id"], "reasons": on_base + other})
            continue
        if dry_run:
            report["would_retire"].append({"patch": row["id"], "reason": why})
            continue
        try:
            store.remove(row["id"])
            store.audit("retire", row["id"], "retired", os.getpid(), os.getuid(),
                        f"daemon: {why}")
        except SutureError as exc:
            log(f"retire {row['id'][:12]}: {exc}")
            continue
        retired[row["id"]] = {"at": report["at"], "reason": why}
        report["retired"].append({"patch": row["id"], "reason": why})
        log(f"retired {row['id'][:12]}: {why}")
    if dry_run:
        return
    installed = {r["id"] for r in store.installed()}
    for patch_id in [i for i in retired if i not in installed]:
        entry = next((e for e in status["patches"] if e["id"] == patch_id), None)
        target = (entry or {}).get("target") or {}
        if not (target.get("name") and target.get("from_version")):
            continue        # not synced any more: nothing would install it again
        on_base, _, _ = retire_check(status, patch_id, target["name"],
                                     target["from_version"], str(target.get("to_version")))
        if on_base:
            del retired[patch_id]
            log(f"{patch_id[:12]} is needed again ({on_base[0]}): installed next cycle")


def _process_view(pid: int, status: Dict[str, Any], refused: Dict[str, str],
                  known: Dict[str, Any], bad: Dict[str, Any]) -> List[Dict[str, str]]:
    """Per known patch: applied, pending import, refused (why), restart required, exposed,
    not affected."""
    out = []
    for entry in status["patches"]:
        for p in entry["processes"]:
            if p["pid"] != pid:
                continue
            state, reason = p["state"], p["reason"]
            why = next((v for k, v in refused.items() if k.startswith(f"{entry['id']}:{pid}:")),
                       None)
            if state == "exposed" and why:
                state, reason = "refused", why
            elif state == "exposed" and entry["id"] in bad:
                reason += f"; the patch is marked bad on this host ({bad[entry['id']]['reason']})"
            elif state == "fixed":
                patch = known.get(entry["id"])
                excluded = list(patch.meta.get("excluded") or []) if patch is not None else []
                state = "restart required" if excluded else "applied"
                reason = f"left out of the patch: {', '.join(excluded)}" if excluded else ""
            out.append({"patch": entry["id"], "state": state, "reason": reason})
    return out


def run(cfg: Config, *, once: bool = False, stop: Optional[threading.Event] = None,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> int:
    """Cycle every ``cfg.interval`` until ``stop`` is set (SIGTERM/SIGINT in the CLI).
    With ``metrics_listen``, serves the last cycle's metrics on ``/metrics``."""
    stop = stop or threading.Event()
    server = _serve_metrics(cfg.metrics_listen, log) if cfg.metrics_listen and not once else None
    try:
        return _loop(cfg, once, stop, log, server)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _serve_metrics(where: Tuple[str, int], log: Callable[[str], None]) -> Any:
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        text = "# no cycle has finished yet\n"

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = Handler.text.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(where, Handler)
    server.handler = Handler  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="suture-metrics", daemon=True).start()
    log(f"metrics on http://{where[0]}:{server.server_address[1]}/metrics")
    return server


def _loop(cfg: Config, once: bool, stop: threading.Event, log: Callable[[str], None],
          server: Any) -> int:
    while True:
        started = time.monotonic()
        try:
            report = cycle(cfg, log=log)
            if server is not None and "metrics" in report:
                server.handler.text = report["metrics"]
            log(f"cycle done: {len(report['patches'])} patch(es) known, "
                f"{len(report['applied'])} apply run(s)")
        except SutureError as exc:
            log(f"cycle failed: {exc}")
            if once:
                return 1
        if once:
            return 0
        if stop.wait(max(0.0, cfg.interval - (time.monotonic() - started))):
            return 0
