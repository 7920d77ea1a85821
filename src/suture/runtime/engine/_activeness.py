"""Where old code still runs: threads, suspended generators and coroutines, asyncio tasks.

Shared by apply (``_wait_quiescent`` before the commit), post and revert (``_settle``:
deletions deferred until no frame runs the code that reads them) and status (``active``).
Enters: code objects by id (``{id: (code, qualname, patch id)}``). Leaves: a list of
places as data, or ops committed once quiet (``_settle``).
Invariant: waits are bounded (``wait_quiescent`` seconds, ``SETTLE_SECONDS``).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import types
from types import CodeType
from typing import Any, Dict, List, Optional, Tuple

from .. import _codes, _interps
from . import commit as _commit
from ..errors import NotQuiescent, SutureError
from ._state import _Record, _isa


# Before 3.14, sys._current_frames() lists the threads of *every* interpreter of the
# process, and makes frame objects for theirs from this one: with another interpreter's
# threads running (own GIL, own allocator) that crashes the process (seen: "double free or
# corruption" on 3.13, a segfault on 3.12). 3.14 lists this interpreter's threads only.
_OWN_THREADS_ONLY = sys.version_info >= (3, 14)
EXEC_WAIT = 0.5   # seconds an isolated 3.12 interpreter's running exec is waited for
_ident_offset: List[int] = []


def thread_frames() -> Dict[int, types.FrameType]:
    """The current frame of each thread of *this* interpreter, by thread ident.

    With other interpreters in the process before 3.14: this interpreter's thread states,
    walked with the C API (``PyInterpreterState_ThreadHead``, ``PyThreadState_Next``,
    ``PyThreadState_GetFrame``) through ctypes, under the GIL that holds them still.
    Raises ``InterpreterUnreachable`` (SUT-E219) where that cannot be done (no ctypes in
    an isolated sub-interpreter of 3.12): frames that cannot be seen must not be taken
    for none."""
    if _OWN_THREADS_ONLY:
        return sys._current_frames()
    found = _interps.listed()
    if found is None or len(found) <= 1:
        return sys._current_frames()
    try:
        import ctypes
    except ImportError as exc:
        # An isolated sub-interpreter of 3.12. Its threads can still be known to have no
        # frame: none but ours (and other agents') exists, and no exec runs in it.
        me = threading.current_thread()
        busy = [t for t in threading.enumerate() if t is not me and t.is_alive()
                and t is not threading.main_thread() and t.name != "suture-agent"]
        # An exec into this interpreter is usually short: wait a little for one to end.
        deadline = time.monotonic() + EXEC_WAIT
        while not busy:
            if _interps.running_here() is False:
                return {}
            if time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        from ..errors import InterpreterUnreachable
        raise InterpreterUnreachable(
            f"the threads of interpreter {_interps.current_id()} cannot be inspected safely "
            f"on CPython {sys.version_info[0]}.{sys.version_info[1]}: sys._current_frames() "
            f"reaches into the process's other interpreters, and ctypes cannot load here "
            f"({exc})") from exc
    api = ctypes.pythonapi
    vp = ctypes.c_void_p
    for name, res, args in (("PyInterpreterState_Get", vp, []),
                            ("PyInterpreterState_ThreadHead", vp, [vp]),
                            ("PyThreadState_Next", vp, [vp]),
                            ("PyThreadState_Get", vp, []),
                            ("PyThreadState_GetFrame", vp, [vp]),
                            ("PyThreadState_GetID", ctypes.c_uint64, [vp]),
                            ("Py_DecRef", None, [vp])):
        fn = getattr(api, name)
        fn.restype, fn.argtypes = res, args
    me = api.PyThreadState_Get()
    if not _ident_offset:
        # tstate->thread_id (the thread's ident) has no getter before 3.14; find its offset
        # in our own thread state, where it must equal threading.get_ident().
        words = (ctypes.c_ulong * 64).from_address(me)
        _ident_offset.append(next((i for i, w in enumerate(words)
                                   if w == threading.get_ident()), -1))
    out: Dict[int, types.FrameType] = {}
    tstate = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
    while tstate:
        if _ident_offset[0] >= 0:
            ident = int((ctypes.c_ulong * 64).from_address(tstate)[_ident_offset[0]])
        else:
            ident = -int(api.PyThreadState_GetID(tstate))
        frame = api.PyThreadState_GetFrame(tstate)   # a new reference, or NULL
        if frame:
            out[ident] = ctypes.cast(frame, ctypes.py_object).value
            api.Py_DecRef(frame)
        tstate = api.PyThreadState_Next(tstate)
    return out


def active(old: Dict[int, Tuple[Any, ...]]) -> List[Dict[str, Any]]:
    """Threads, suspended generators/coroutines and tasks still executing old code."""
    if not old:
        return []
    out: List[Dict[str, Any]] = []
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    try:
        frames = thread_frames()
    except SutureError as exc:
        # Unseen threads may run old code: said as such, never taken for none (exposed).
        return [{"qualname": "(threads not inspectable)", "where": "thread", "patch": _pid(v),
                 "thread": str(exc.message), "line": None} for v in old.values()][:1]
    for ident, frame in frames.items():
        if ident == me:
            continue
        f: Optional[types.FrameType] = frame
        while f is not None:
            hit = old.get(id(f.f_code))
            if hit is not None and hit[0] is f.f_code:
                out.append({"qualname": hit[1], "where": "thread", "patch": _pid(hit),
                            "thread": names.get(ident, str(ident)), "line": f.f_lineno})
            f = f.f_back
    # Only generator/coroutine code can be suspended outside a thread's stack; each
    # extra argument to get_referrers multiplies the cost of its heap walk.
    codes = [v[0] for v in old.values() if _codes.kind(v[0])]
    suspended = [o for o in gc.get_referrers(*codes) if type(o) in _GEN_KINDS] if codes else []
    for o in suspended:
        kind = _GEN_KINDS[type(o)]
        gen_frame: Optional[types.FrameType] = getattr(o, _FRAME_ATTR[kind], None)
        hit = old.get(id(gen_frame.f_code)) if gen_frame is not None else None
        if hit is not None and gen_frame is not None and hit[0] is gen_frame.f_code:
            out.append({"qualname": hit[1], "where": kind, "patch": _pid(hit),
                        "line": gen_frame.f_lineno})
            out.extend(_tasks_awaiting(o, hit))
    return out


def _tasks_awaiting(obj: Any, hit: Tuple[Any, ...]) -> List[Dict[str, Any]]:
    """asyncio tasks whose await chain reaches ``obj`` (walking up, at most 64 levels)."""
    task_type = getattr(sys.modules.get("asyncio"), "Task", None)
    if task_type is None:
        return []
    out: List[Dict[str, Any]] = []
    level = [obj]
    for _ in range(64):
        parents = []
        for p in gc.get_referrers(*level):
            if _isa(p, task_type):
                if not p.done() and p.get_coro() in level:
                    out.append({"qualname": hit[1], "where": "task", "patch": _pid(hit),
                                "task": p.get_name()})
            elif type(p) in _GEN_KINDS and (getattr(p, "cr_await", None) in level
                                            or getattr(p, "gi_yieldfrom", None) in level
                                            or getattr(p, "ag_await", None) in level):
                parents.append(p)
        if not parents:
            break
        level = parents
    return out


SETTLE_SECONDS = 2.0


def _settle(ops: List[Any], codes: Dict[int, Tuple[Any, ...]], undo: bool) -> List[str]:
    """Commit deferred deletions once none of ``codes`` runs anywhere (bounded wait)."""
    if not ops:
        return []
    deadline = time.monotonic() + SETTLE_SECONDS
    while active(codes):
        if time.monotonic() >= deadline:
            names = ", ".join(o.label or str(o.key) for o in ops[:5])
            return [f"kept {len(ops)} name(s) bound ({names}) because code that reads them was "
                    f"still running after {SETTLE_SECONDS:g} s; they are unused otherwise"]
        time.sleep(0.001)
    (_commit.undo if undo else _commit.run)(ops)
    return []


def _installed_codes(rec: _Record) -> Dict[int, Tuple[Any, ...]]:
    """Code objects a patch put in place (swapped in, or of functions it created)."""
    out: Dict[int, Tuple[Any, ...]] = {}
    for o in rec.ops:
        new = getattr(o, "new", None)
        code = new if isinstance(new, CodeType) else getattr(new, "__code__", None)
        if isinstance(code, CodeType):
            out[id(code)] = (code, o.label or str(o.key), rec.patch.id)
            for q, c in _codes.walk(code, ""):
                out[id(c)] = (c, q, rec.patch.id)
    return out


def _pid(hit: Tuple[Any, ...]) -> str:
    return hit[2] if len(hit) > 2 else ""


_GEN_KINDS = {types.GeneratorType: "generator", types.CoroutineType: "coroutine",
              types.AsyncGeneratorType: "async_generator"}
_FRAME_ATTR = {"generator": "gi_frame", "coroutine": "cr_frame", "async_generator": "ag_frame"}


def _wait_quiescent(rec: _Record, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        busy = active(rec.old_codes)
        if not busy:
            return
        if time.monotonic() >= deadline:
            where = "; ".join(f"{b['qualname']} in a {b['where']}" for b in busy[:5])
            raise NotQuiescent(
                f"Patch {rec.patch.short_id} was not applied: after {seconds:g} s old code is "
                f"still running ({where}). Nothing was changed; retry later or apply without "
                "--wait-quiescent (running frames then finish on the old code).",
                details={"patch": rec.patch.id, "active": busy})
        time.sleep(0.01)
