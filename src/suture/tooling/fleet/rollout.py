"""Watch a rollout: after ``suture apply --watch``, keep checking; on failure, undo (issue 5).

For ``--watch SECONDS`` after an apply, every ``interval``: every process the apply
reached must still be the same process (pid and start time, so a reused pid does not
pass for it), and the health check, if one was given, must pass: a URL (GET; healthy
on a 2xx or 3xx answer within the timeout) or a shell command (healthy on exit 0).
The first failure ends the watch; the caller reverts everywhere the apply reached and
marks the patch bad on this host (crash-loop protection: agents and ``suture apply``
then refuse it until ``suture bad clear``).

Proxies are ignored for the URL (a health endpoint is local), and redirects are not
followed: a 3xx already counts as an answer from a live service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["HealthCheck", "WatchReport", "start_time", "watch"]

# `suture apply` imports this module; what only --watch and --health need (urllib.request,
# subprocess, the agent's module) is imported where they run (issue 19: urllib.request
# alone costs more than the rest of apply's imports from here).


@dataclass(frozen=True)
class HealthCheck:
    spec: str
    timeout: float = 10.0

    @property
    def is_url(self) -> bool:
        return self.spec.startswith(("http://", "https://"))

    def run(self) -> Optional[str]:
        """None when healthy, else why not (one line)."""
        return self._url() if self.is_url else self._command()

    def _url(self) -> Optional[str]:
        import urllib.error
        import urllib.request

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        try:
            with opener.open(self.spec, timeout=self.timeout) as answer:
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            return f"GET {self.spec}: {exc}"
        return None if 200 <= status < 400 else f"GET {self.spec}: HTTP {status}"

    def _command(self) -> Optional[str]:
        import subprocess

        try:
            done = subprocess.run(["/bin/sh", "-c", self.spec], capture_output=True,
                                  text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"`{self.spec}` did not finish within {self.timeout:g} s"
        except OSError as exc:
            return f"`{self.spec}` could not run: {exc}"
        if done.returncode == 0:
            return None
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
        return f"`{self.spec}` exited {done.returncode}" + (f": {last[0][:200]}" if last[0]
                                                             else "")


def start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or
    None if there is no such live process (a zombie has exited: it only waits for its
    parent to read its status). With the pid, the start time names one process for good.
    The agent's crash-loop check reads it the same way (one parser for both)."""
    from ...runtime._agent import _start_ticks

    ticks = _start_ticks(pid)
    return int(ticks) if ticks.isdigit() else None


@dataclass
class WatchReport:
    seconds: float
    result: str = "passed"            # or "failed"
    reason: str = ""
    checks: int = 0
    died: List[int] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result == "failed"

    def to_dict(self) -> Dict[str, Any]:
        return {"seconds": self.seconds, "result": self.result, "reason": self.reason,
                "checks": self.checks, "died": self.died}


def watch(pids: Sequence[int], seconds: float, check: Optional[HealthCheck] = None,
          interval: float = 1.0, starts: Optional[Dict[int, Optional[int]]] = None,
          tick: Optional[Callable[[float, WatchReport], None]] = None) -> WatchReport:
    """Watch ``pids`` (and ``check``) for ``seconds``; stops at the first failure.

    ``starts`` are the processes' start times taken before the apply (default: now), so
    that a process that died during the apply itself counts as dead.
    """
    report = WatchReport(seconds)
    starts = {pid: (starts or {}).get(pid, start_time(pid)) for pid in pids}
    begin = time.monotonic()
    end = begin + seconds
    while True:
        report.died = [pid for pid, st in starts.items() if st is None or start_time(pid) != st]
        if report.died:
            report.result = "failed"
            report.reason = (f"process{'es' if len(report.died) > 1 else ''} "
                             f"{', '.join(map(str, report.died))} died "
                             f"{time.monotonic() - begin:.1f} s after the patch was applied")
            return report
        if check is not None:
            why = check.run()
            report.checks += 1
            if why is not None:
                report.result, report.reason = "failed", f"health check failed: {why}"
                return report
        now = time.monotonic()
        if tick is not None:
            tick(now - begin, report)
        if now >= end:
            return report
        time.sleep(max(0.0, min(interval, end - now)))


@dataclass
class Rollout:
    """What ``apply_watched`` did: the apply's rows, and the watch with its aftermath."""
    rows: List[Any]
    watch: Optional[WatchReport] = None
    reverted: List[Any] = field(default_factory=list)
    marked_bad: Optional[bool] = None     # None: no failure; False: the mark failed

    def exit_code(self) -> int:
        """``fanout.exit_code`` of the apply; after a failed watch 3 (1 if a revert failed)."""
        from . import fanout

        if self.watch is not None and self.watch.failed:
            # a revert that missed an interpreter (partial) left the patch there: failed
            return 1 if any(r.outcome in ("failed", "partial") for r in self.reverted) else 3
        return fanout.exit_code(self.rows)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"processes": [r.to_dict() for r in self.rows]}
        if self.watch is not None:
            out["watch"] = self.watch.to_dict()
            if self.watch.failed:
                out["watch"]["reverted"] = [r.to_dict() for r in self.reverted]
                out["watch"]["marked_bad"] = bool(self.marked_bad)
        return out


def apply_watched(data: bytes, patch: Any, pids: Sequence[int], *, select_all: bool = False,
                  wait_quiescent: Optional[float] = None, parallel: Optional[int] = None,
                  check: Optional[HealthCheck] = None, watch_s: Optional[float] = None,
                  interval: float = 1.0, progress: Optional[Callable[..., None]] = None,
                  on_watch: Optional[Callable[[List[Any], int], None]] = None,
                  restricted_to: Optional[str] = None) -> Rollout:
    """Apply to ``pids``; with ``watch_s``, watch them (and ``check``) that long, and on a
    failure revert everywhere this apply reached and mark the patch bad on this host.
    ``on_watch(rows, n)`` is called when the watch of ``n`` processes starts. The one
    implementation behind ``suture apply --watch`` and the daemon. ``restricted_to``: the
    trust record's (tooling/trust ``Verdict.record``), passed on to every agent."""
    import os

    from ...runtime import store
    from ...runtime.errors import SutureError
    from . import fanout

    # Before the apply (see watch()), and only for a watch: read by nothing else.
    starts = {pid: start_time(pid) for pid in pids} if watch_s else {}
    done = Rollout(fanout.apply(data, patch, pids, select_all=select_all,
                               wait_quiescent=wait_quiescent, progress=progress,
                               parallel=parallel, restricted_to=restricted_to))
    # A "failed" row may be a process the patch killed before it could answer: watched
    # too (dead: the watch fails at once; alive: the revert skips it if nothing applied).
    watched = [r.pid for r in done.rows if r.outcome in ("applied", "pending import", "failed")]
    if not watch_s or not watched:
        return done
    if on_watch is not None:
        on_watch(done.rows, len(watched))
    done.watch = watch(watched, watch_s, check, interval, starts)
    try:
        store.audit("watch", patch.id, done.watch.result, os.getpid(), os.getuid(),
                    done.watch.reason)
    except SutureError:
        pass  # the outcome does not depend on the log
    if done.watch.failed:
        alive = [pid for pid in watched if pid not in done.watch.died]
        done.reverted = fanout.revert(patch.id, alive, select_all=True, progress=progress,
                                     parallel=parallel)
        try:
            store.mark_bad(patch.id, done.watch.reason, os.getuid())
            done.marked_bad = True
        except SutureError:
            done.marked_bad = False
    return done
