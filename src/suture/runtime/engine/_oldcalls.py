"""Evidence that the replaced code is gone: calls into it since counting began, and when
the last frame running it was seen to leave.

After an apply, new calls run the fixed code; the code objects it replaced should run only
in frames that started before (``_activeness.active`` names them) and then never again. A
call into one later means something still holds the old code where the engine did not
reach (a function rebuilt from an old code object, a copy made before the patch). So:

* **drained**: the first ``status()`` that finds no frame of a patch on old code records
  the time (``drained_at``). It is an upper bound: the last frame left at or before it.
* **old calls** (CPython 3.12+, ``sys.monitoring``): while counting is on, every start or
  resume of a replaced code object of an applied patch is counted, per qualified name.
  Local events on those code objects only: the fixed code and everything else run as
  before, so an idle count costs nothing. Off unless asked for (``counting(True)``, the
  agent's ``status`` op with ``old_calls``, or ``$SUTURE_COUNT_OLD_CALLS=1`` at start);
  a patch applied while it is on is counted from its apply.

Enters: ``_Record`` objects (their ``old_codes``), under the engine lock. Leaves: a dict
per patch for status. Invariant: instruments only code objects a record holds as
replaced, and removes its events from a record's codes before a revert puts them back.

Rejected: ``sys.setprofile``/``settrace`` (every call of every function in the process
pays); counting in a wrapper around old functions (a frame already running old code, or
a function rebuilt from the code object, bypasses it).
"""

from __future__ import annotations

import os
import sys
import time
from types import CodeType
from typing import Any, Dict, List, Optional, Tuple

from ._state import _Record

# sys.monitoring's tool ids: 0 debugger, 1 coverage, 2 profiler, 5 optimizer; 3 and 4
# have no assigned user. The first free of these is taken while counting is on.
_TOOL_IDS = (4, 3)
_NAME = "suture-old-calls"

_tool: Optional[int] = None
_why_not: Optional[str] = None          # counting asked for but impossible here
_since: Dict[str, float] = {}           # patch id -> counting began (apply or switch-on)
_counts: Dict[int, List[Any]] = {}      # id(old code) -> [code, qualname, patch id, calls]
_drained: Dict[str, float] = {}         # patch id -> first status with no old frame


def _count(code: CodeType, offset: int) -> Any:
    entry = _counts.get(id(code))
    if entry is not None and entry[0] is code:
        entry[3] += 1
    return None


def counting(on: bool, records: List[_Record]) -> Optional[str]:
    """Switch counting on or off for every applied patch; None, or why it cannot be on
    here (before 3.12; every free tool id taken by other tools)."""
    global _tool, _why_not
    mon = getattr(sys, "monitoring", None)
    if not on:
        for rec in records:
            forget(rec)
        if _tool is not None and mon is not None:
            for event in (mon.events.PY_START, mon.events.PY_RESUME):
                mon.register_callback(_tool, event, None)
            mon.free_tool_id(_tool)
        _tool, _why_not = None, None
        return None
    if _tool is None:
        if mon is None:
            _why_not = "counting calls into replaced code needs CPython 3.12+ (sys.monitoring)"
            return _why_not
        for tool in _TOOL_IDS:
            try:
                mon.use_tool_id(tool, _NAME)
            except ValueError:
                continue
            _tool = tool
            break
        else:
            _why_not = ("sys.monitoring tool ids " + " and ".join(map(str, _TOOL_IDS))
                        + " are used by other tools: calls into replaced code not counted")
            return _why_not
        for event in (mon.events.PY_START, mon.events.PY_RESUME):
            mon.register_callback(_tool, event, _count)
        _why_not = None
    for rec in records:
        track(rec)
    return None


def track(rec: _Record) -> None:
    """Count calls into ``rec``'s replaced code objects (from now on) if counting is on;
    called after every commit that adds some (an apply, a module patched on import)."""
    if _tool is None and (_why_not is not None or not from_environment()
                          or counting(True, []) is not None):
        return
    tool, mon = _tool, getattr(sys, "monitoring", None)
    if tool is None or mon is None:
        return
    _since.setdefault(rec.patch.id, time.time())
    for key, (code, qualname) in rec.old_codes.items():
        entry = _counts.get(key)
        if entry is not None and entry[0] is code:
            continue
        _counts[key] = [code, qualname, rec.patch.id, 0]
        mon.set_local_events(tool, code, mon.events.PY_START | mon.events.PY_RESUME)


def forget(rec: _Record) -> None:
    """Stop counting for ``rec`` (before a revert puts its old code back in service)."""
    _since.pop(rec.patch.id, None)
    _drained.pop(rec.patch.id, None)
    mon = getattr(sys, "monitoring", None)
    for key in [k for k, e in _counts.items() if e[2] == rec.patch.id]:
        code = _counts.pop(key)[0]
        if _tool is not None and mon is not None:
            mon.set_local_events(_tool, code, 0)


def report(patch_id: str, active: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The evidence for one applied patch, given ``active`` (its frames on old code)."""
    now = time.time()
    if active:
        _drained.pop(patch_id, None)   # a frame seen again (a generator resumed): not drained
    else:
        _drained.setdefault(patch_id, now)
    out: Dict[str, Any] = {"drained_at": _drained.get(patch_id)}
    if _tool is not None and patch_id in _since:
        calls: Dict[str, int] = {}
        for _code, qualname, pid, n in _counts.values():
            if pid == patch_id and n:
                calls[qualname] = calls.get(qualname, 0) + n
        out["old_calls"] = {"since": _since[patch_id], "calls": sum(calls.values()),
                            "by_function": dict(sorted(calls.items()))}
    elif _why_not is not None:
        out["old_calls"] = {"unavailable": _why_not}
    return out


def from_environment() -> bool:
    """Whether ``$SUTURE_COUNT_OLD_CALLS`` asks for counting from the start."""
    return os.environ.get("SUTURE_COUNT_OLD_CALLS", "").strip().lower() in ("1", "true", "yes")


def state() -> Tuple[bool, Optional[str]]:
    """(counting, why not when asked for and impossible)."""
    return _tool is not None, _why_not
