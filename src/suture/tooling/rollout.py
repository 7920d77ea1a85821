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

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..runtime._agent import _start_ticks

__all__ = ["HealthCheck", "WatchReport", "start_time", "watch"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


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
