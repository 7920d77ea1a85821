"""Fan one operation out to many processes, one row per process (logic behind the CLI).

Each process is contacted on its own thread; one slow or broken agent delays only its
own row. A row is plain data (``Row.to_dict()`` is what ``--json`` prints). Outcomes:

* apply: ``applied``, ``already fixed``, ``already applied``, ``pending import``,
  ``skipped`` (``--all`` only: the process does not have the target distribution),
  ``refused`` (the agent changed nothing: a ``RefusedError``, a patch it cannot read,
  an unknown patch id...), ``failed`` (no answer, rolled back, internal error).
* revert: ``reverted``, ``skipped`` (``--all``: the patch is not applied there),
  ``refused``, ``failed``.
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..runtime.errors import (PatchFormatError, RefusedError, RevertOrderError, SutureError,
                              UnknownPatch)
from ..runtime.patchfile import Patch
from . import client

__all__ = ["Row", "apply", "revert", "status", "ps", "agent_pids", "exit_code",
           "OK_OUTCOMES", "STATUS_TIMEOUT"]

OK_OUTCOMES = ("applied", "already fixed", "already applied", "pending import", "skipped",
               "reverted", "ok")
STATUS_TIMEOUT = 10.0
APPLY_TIMEOUT = 60.0
PROGRESS_OVER = 10

# Errors after which the process is exactly as before and the remedy concerns the patch.
_REFUSALS = (RefusedError, PatchFormatError, UnknownPatch, RevertOrderError)

Progress = Callable[[int, int, "Row"], None]


@dataclass
class Row:
    pid: int
    outcome: str                       # see the module docstring
    reason: str = ""
    code: Optional[str] = None
    result: Dict[str, Any] = field(default_factory=dict)
    error: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"pid": self.pid, "outcome": self.outcome, "reason": self.reason,
                "code": self.code, "result": self.result, "error": self.error}


def _error_row(pid: int, exc: SutureError) -> Row:
    outcome = "refused" if isinstance(exc, _REFUSALS) else "failed"
    return Row(pid, outcome, reason=exc.message, code=exc.code, error=exc.to_dict())


def exit_code(rows: Sequence[Row]) -> int:
    """1 if any row failed, else 2 if any was refused, else 0."""
    if any(r.outcome == "failed" for r in rows):
        return 1
    if any(r.outcome == "refused" for r in rows):
        return 2
    return 0


def agent_pids(runtime_dir: Optional[str] = None) -> List[int]:
    """PIDs of the visible Python processes whose agent answers hello."""
    return sorted(p.pid for p in client.list_python_processes(runtime_dir=runtime_dir)
                  if p.agent)


def _fan_out(pids: Sequence[int], work: Callable[[int], Row],
             progress: Optional[Progress]) -> List[Row]:
    rows: Dict[int, Row] = {}
    if not pids:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(pids))) as pool:
        futures = {pool.submit(_guarded, work, pid): pid for pid in pids}
        for done, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            rows[futures[fut]] = row
            if progress is not None and len(pids) > PROGRESS_OVER:
                progress(done, len(pids), row)
    return [rows[pid] for pid in pids]


def _guarded(work: Callable[[int], Row], pid: int) -> Row:
    try:
        return work(pid)
    except SutureError as exc:
        return _error_row(pid, exc)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _has_dist(dists: Dict[str, Any], name: str) -> bool:
    want = _canonical(name)
    for key, value in dists.items():
        if _canonical(key) == want:
            if isinstance(value, dict):
                return value.get("version") is not None
            return value is not None
    return False


def apply(data: bytes, patch: Patch, pids: Sequence[int], *, select_all: bool = False,
          wait_quiescent: Optional[float] = None, runtime_dir: Optional[str] = None,
          progress: Optional[Progress] = None) -> List[Row]:
    """Apply the (already validated) patch ``data`` to each of ``pids`` in parallel."""
    encoded = base64.b64encode(data).decode("ascii")
    timeout = APPLY_TIMEOUT + (wait_quiescent or 0.0)
    dist = patch.target.get("name") if patch.target.get("kind") == "distribution" else None

    def work(pid: int) -> Row:
        if select_all and dist:
            found = client.call(pid, "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                                names=[dist]).get("dists", {})
            if not _has_dist(found if isinstance(found, dict) else {}, dist):
                return Row(pid, "skipped", reason=f"does not use {dist}")
        result = client.call(pid, "apply", timeout, runtime_dir=runtime_dir, patch=encoded,
                             wait_quiescent=wait_quiescent)
        state = str(result.get("state", "?"))
        return Row(pid, state, reason=_summary(result), result=result)

    return _fan_out(pids, work, progress)


def revert(patch_id: str, pids: Sequence[int], *, select_all: bool = False,
           runtime_dir: Optional[str] = None, progress: Optional[Progress] = None) -> List[Row]:
    def work(pid: int) -> Row:
        try:
            result = client.call(pid, "revert", APPLY_TIMEOUT, runtime_dir=runtime_dir,
                                 patch_id=patch_id)
        except UnknownPatch as exc:
            if select_all:
                return Row(pid, "skipped", reason=f"patch {patch_id} is not applied here",
                           code=exc.code)
            raise
        return Row(pid, str(result.get("state", "?")), reason=_summary(result), result=result)

    return _fan_out(pids, work, progress)


def _summary(result: Dict[str, Any]) -> str:
    parts = []
    modules = result.get("modules") or {}
    if modules:
        parts.append(", ".join(f"{m}: {s}" for m, s in sorted(modules.items())))
    if result.get("pause_ns"):
        parts.append(f"pause {result['pause_ns'] / 1e6:.2f} ms")
    return "; ".join(parts)


def status(pids: Sequence[int], *, runtime_dir: Optional[str] = None,
           progress: Optional[Progress] = None) -> List[Row]:
    """Each process's ``status()``; outcome ``ok``, or ``attention`` when a module of a
    patch is pending import or was refused at import, or ``failed``."""
    def work(pid: int) -> Row:
        result = client.call(pid, "status", STATUS_TIMEOUT, runtime_dir=runtime_dir)
        waiting = [f"{p.get('id', '?')[:12]} {m}: {s}" for p in result.get("patches", [])
                   for m, s in (p.get("modules") or {}).items()
                   if s == "pending import" or str(s).startswith("refused")]
        if waiting:
            return Row(pid, "attention", reason="; ".join(waiting), result=result)
        return Row(pid, "ok", result=result)

    return _fan_out(pids, work, progress)


def status_exit_code(rows: Sequence[Row]) -> int:
    if any(r.outcome == "failed" for r in rows):
        return 1
    if any(r.outcome == "attention" for r in rows):
        return 2
    return 0


def ps(*, dists: Sequence[str] = (), runtime_dir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every visible Python process; for those with an agent, its patch ids, and the
    versions of the distributions ``dists`` (all when empty) with whether each is imported."""
    procs = client.list_python_processes(runtime_dir=runtime_dir)
    rows = [dict(p.to_dict(), patches=[], dists={}, loaded={}) for p in procs]

    def enrich(row: Dict[str, Any]) -> None:
        fields: Dict[str, Any] = {"names": list(dists)} if dists else {}
        try:
            row["patches"] = list(client.call(row["pid"], "list", STATUS_TIMEOUT,
                                              runtime_dir=runtime_dir).get("patches", []))
            found = client.call(row["pid"], "dists", STATUS_TIMEOUT, runtime_dir=runtime_dir,
                                **fields)
            row["dists"] = dict(found.get("dists") or {})
            row["loaded"] = dict(found.get("loaded") or {})
        except SutureError as exc:
            row["agent_error"] = exc.message

    with_agent = [r for r in rows if r["agent"]]
    if with_agent:
        with ThreadPoolExecutor(max_workers=min(32, len(with_agent))) as pool:
            list(pool.map(enrich, with_agent))
    return sorted(rows, key=lambda r: r["pid"])
