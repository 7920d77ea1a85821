"""Prometheus metrics for a host, in the text exposition format (docs/fleet.md).

Built from ``fanout.status()`` (what ``suture status --json`` prints), the store's audit
log and the feed mirrors. Written by ``suture metrics`` to standard output or, for
node-exporter's textfile collector, atomically to a ``.prom`` file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from . import fanout

# Commit pauses in seconds: under 10 µs is the usual case, a millisecond is a heavy patch.
PAUSE_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.1)

Sample = Tuple[str, Dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_: str, samples: Iterable[Sample]) -> List[str]:
    out = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for sample, labels, value in samples:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        out.append(f"{sample}{{{text}}} {value:g}" if labels else f"{sample} {value:g}")
    return out


def render(report: Dict[str, Any], audit: Sequence[Dict[str, Any]],
           feeds: Sequence[Dict[str, Any]]) -> str:
    """The exposition text. ``audit``: rows of ``store.audit_log()``; ``feeds``: the
    ``state.json`` of each feed mirror, with its ``feed`` name."""
    lines: List[str] = []
    procs = Counter(p["state"] for p in report["processes"])
    lines += _family("suture_processes", "gauge",
                     "Python processes by state (exposed: runs a release a known patch fixes, "
                     "without it in some interpreter, or has an interpreter that could not "
                     "be inspected; unknown: no agent, not inspected).",
                     [("suture_processes", {"state": s}, procs.get(s, 0))
                      for s in fanout.PROCESS_STATES])
    per_cve: "Counter[str]" = Counter()
    for p in report["processes"]:
        for cve in sorted({c for x in p.get("exposed", []) for c in x["cves"]}):
            per_cve[cve] += 1
    known_cves = sorted({c for e in report["patches"] for c in e["cves"]}
                        | {a["id"] for a in report.get("advisories") or []})
    lines += _family("suture_exposed_processes", "gauge",
                     "Processes still exposed to each CVE of the known patches or public "
                     "advisory of the releases they run (draining ones included: old code "
                     "of the patch still runs there).",
                     [("suture_exposed_processes", {"cve": c}, per_cve.get(c, 0))
                      for c in known_cves])
    patch_states = [("suture_patch_processes", {"patch": e["id"][:12], "state": s},
                     sum(1 for p in e["processes"] if p["state"] == s))
                    for e in report["patches"] for s in fanout.PATCH_STATES]
    lines += _family("suture_patch_processes", "gauge",
                     "Processes per known patch and state (draining: applied, but frames "
                     "that started before it still run the old code; such a process also "
                     "counts in suture_exposed_processes).", patch_states)
    from .advisories import STATES as ADVISORY_STATES
    lines += _family("suture_advisory_processes", "gauge",
                     "Processes per public advisory of a release they run, and state (fixed "
                     "in memory; exposed, patch available; exposed, no patch; not affected).",
                     [("suture_advisory_processes",
                       {"advisory": a["id"], "package": a["package"], "state": s},
                       sum(1 for r in a["processes"] if r["state"] == s))
                      for a in report.get("advisories") or [] for s in ADVISORY_STATES])
    debt: Dict[Tuple[str, str], List[float]] = {}
    for r in report.get("restart_debt") or []:
        debt.setdefault((str(r["patch"])[:12], str(r["distribution"])), []).append(
            float(r["held_for"] or 0.0))
    lines += _family("suture_restart_debt_processes", "gauge",
                     "Processes that hold a hot patch while the disk has the fixed release "
                     "(or newer): a restart runs it from disk and lets the patch retire. Not "
                     "exposed.",
                     [("suture_restart_debt_processes", {"patch": k[0], "package": k[1]},
                       len(v)) for k, v in sorted(debt.items())])
    lines += _family("suture_restart_debt_seconds", "gauge",
                     "Of those processes, the longest time one has held the patch (seconds "
                     "since it was applied there).",
                     [("suture_restart_debt_seconds", {"patch": k[0], "package": k[1]},
                       max(v)) for k, v in sorted(debt.items())])
    lines += _family("suture_advisory_unknown_releases", "gauge",
                     "Releases that processes run whose advisories could not be had (the "
                     "registry unreachable or not serving them, not in the mirror file): "
                     "their exposure is unknown, not none.",
                     [("suture_advisory_unknown_releases", {},
                       len(report.get("advisory_errors") or []))])
    hit = [p for p in report["processes"] if p.get("uninspectable")]
    lines += _family("suture_uninspectable_processes", "gauge",
                     "Processes with an interpreter their agent could not reach (not fully "
                     "inspectable): counted as exposed in suture_processes.",
                     [("suture_uninspectable_processes", {}, len(hit))])
    lines += _family("suture_uninspectable_interpreters", "gauge",
                     "Interpreters (sub-interpreters, mod_wsgi application groups...) that "
                     "could not be inspected, over all processes.",
                     [("suture_uninspectable_interpreters", {},
                       sum(len(p["uninspectable"]) for p in hit))])
    lines += _family("suture_hidden_processes", "gauge",
                     "Python processes of other users this user could not inspect.",
                     [("suture_hidden_processes", {}, len(report.get("hidden") or []))])
    ops = Counter((str(r.get("op")), str(r.get("result"))) for r in audit)
    lines += _family("suture_operations_total", "counter",
                     "Operations recorded in the host's audit log, by operation and result.",
                     [("suture_operations_total", {"op": op, "result": res}, n)
                      for (op, res), n in sorted(ops.items())])
    pauses = [a["pause_ns"] / 1e9 for p in report["processes"] for a in p.get("applied", [])
              if isinstance(a.get("pause_ns"), (int, float))]
    lines += _family("suture_apply_pause_seconds", "histogram",
                     "Commit pause (other threads stopped) of each patch applied in a "
                     "running process.", _histogram("suture_apply_pause_seconds", pauses))
    lines += _family("suture_feed_last_sync_timestamp_seconds", "gauge",
                     "When each feed was last synced completely (Unix time).",
                     [("suture_feed_last_sync_timestamp_seconds", {"feed": f["feed"]},
                       f["synced_unix"]) for f in feeds if "synced_unix" in f])
    lines += _family("suture_feed_index_version", "gauge",
                     "Index version of each feed last accepted.",
                     [("suture_feed_index_version", {"feed": f["feed"]}, f["version"])
                      for f in feeds if isinstance(f.get("version"), int)])
    return "\n".join(lines) + "\n"


def _histogram(name: str, values: Sequence[float]) -> List[Sample]:
    out: List[Sample] = [(f"{name}_bucket", {"le": f"{b:g}"}, sum(1 for v in values if v <= b))
                         for b in PAUSE_BUCKETS]
    out.append((f"{name}_bucket", {"le": "+Inf"}, len(values)))
    out.append((f"{name}_sum", {}, sum(values)))
    out.append((f"{name}_count", {}, len(values)))
    return out


def feed_states(root: Path) -> List[Dict[str, Any]]:
    """The state of every feed mirror under ``root`` (``<state dir>/feeds``), labelled
    with the feed's name. Mirrors are keyed by source (feed.mirror_dir); a mirror of the
    old layout (``feeds/<feed name>/``, state format 1) counts only while no mirror of
    the new layout has that feed's name, so an upgraded host does not report it twice."""
    from .feed import parse_time

    out = []
    for state_file in sorted(root.glob("*/state.json")):
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            state.setdefault("feed", state_file.parent.name)
            state["synced_unix"] = parse_time(state["synced"]).timestamp()
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        out.append(state)
    current = {s["feed"] for s in out if "format" in s}
    return [s for s in out if "format" in s or s["feed"] not in current]


def write_textfile(path: Path, text: str) -> None:
    """Atomically, as node-exporter's textfile collector requires (it may read any time)."""
    from .feed import _write_atomic

    _write_atomic(path, text.encode("utf-8"), 0o644)
