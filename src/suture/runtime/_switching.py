"""A lowered ``sys.setswitchinterval`` while Suture works in a busy process (stdlib only).

Every blocking call (accept, recv, send, a file read, sqlite, an import) releases the GIL,
and the thread must win it back afterwards. With N threads running pure-Python CPU work,
that takes about N x the switch interval (5 ms by default): measured with 50 busy
threads on 3.11, a ``hello`` took 2 s and a small apply 16 s (docs/live-processes.md,
"Busy processes"). While the agent serves a request (and while the engine prepares a
patch), the interval is lowered, so each wait is short; it is put back afterwards.

Several holders may overlap (the agent thread, an in-process ``runtime.apply`` on an
application thread): the interval in force is the smallest one asked for, and the
application's own value is put back when the last holder leaves. A value the
application sets while we hold the interval lowered wins: it is what we put back (we
notice it because the current value is no longer the one we set). Rejected: each holder
saving and restoring for itself (two overlapping holders can leave the lowered value in
place for good, when the first to leave restores the application's value and the second
then restores the first's lowered one).

The lock is held only for a few statements that never release the GIL; a child forked
meanwhile re-creates it and puts the application's value back (_after_fork).

``collector_deferred`` does the same for the cyclic garbage collector's first threshold:
the engine allocates tens of thousands of objects while it prepares (syntax trees,
plans), and an automatic collection they trigger runs inside that allocation, in one C
call that no switch interval interrupts. A full collection of a 50 k-object heap stopped
every thread for 10-15 ms in the middle of an apply (benchmarks/stall.py). While a holder
is in, threshold0 is raised to ``_DEFERRED``: a young collection runs only after about
100 k net new objects (an apply of 100 functions leaves about 8 k), so collections wait
until after the apply, yet an apply that waits for seconds (``wait_quiescent``, units of
work) while the application allocates still collects, every 100 k objects. Nothing else
changes: ``gc.collect()`` still works. Rejected: ``gc.disable()`` (unbounded while the
engine waits; and a ``gc.disable()`` of the application's meanwhile cannot be told from
ours, so re-enabling would override it; a threshold the application sets meanwhile can: it
is no longer ours, and it is kept).
"""

from __future__ import annotations

import gc
import os
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Dict, Optional, Tuple

_lock = threading.Lock()
_holders: Dict[int, float] = {}   # token -> interval asked for
_saved: Optional[float] = None    # the application's value, while anyone holds
_ours: Optional[float] = None     # what we set (as getswitchinterval reports it)
_next = 0
_fork_hook = False
_gc_holders = 0
_gc_saved: Optional[Tuple[int, ...]] = None   # the application's thresholds, while held
_DEFERRED = 100_003   # threshold0 while held: a value no one else sets


def _set_locked() -> None:
    global _ours
    assert _saved is not None
    want = min([_saved, *_holders.values()])
    sys.setswitchinterval(want)
    _ours = sys.getswitchinterval()


class lowered:
    """``with lowered(interval):`` runs the block with the switch interval at most
    ``interval`` seconds. A class rather than contextlib.contextmanager: the agent enters
    it before its first imports, and contextlib costs an idle agent up to 0.6 MiB of
    modules (issue 19)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.token = 0

    def __enter__(self) -> None:
        global _saved, _next
        _register_fork_hook()
        with _lock:
            current = sys.getswitchinterval()
            if not _holders or current != _ours:
                _saved = current   # first holder, or the application changed it meanwhile
            _next += 1
            self.token = _next
            _holders[self.token] = self.interval
            _set_locked()

    def __exit__(self, *exc: object) -> None:
        global _saved
        with _lock:
            _holders.pop(self.token, None)   # gone if a fork in the block cleared it
            current = sys.getswitchinterval()
            if current != _ours:
                _saved = current
            if _holders:
                _set_locked()
            else:
                if _saved is not None:
                    sys.setswitchinterval(_saved)
                _saved = None


def _register_fork_hook() -> None:
    global _fork_hook
    if not _fork_hook and hasattr(os, "register_at_fork"):
        _fork_hook = True   # registered on first use: importing the runtime registers nothing
        os.register_at_fork(after_in_child=_after_fork)


class collector_deferred:
    """``with collector_deferred():`` runs the block with automatic garbage collections
    held off (module docstring). A class for the reason ``lowered`` is one."""

    def __enter__(self) -> None:
        global _gc_holders, _gc_saved
        _register_fork_hook()
        with _lock:
            _gc_holders += 1
            if _gc_holders == 1:
                saved = gc.get_threshold()
                if saved[0] > 0:   # 0: the application turned automatic collection off
                    _gc_saved = saved
                    gc.set_threshold(_DEFERRED, *saved[1:])

    def __exit__(self, *exc: object) -> None:
        global _gc_holders
        with _lock:
            _gc_holders = max(0, _gc_holders - 1)
            if _gc_holders == 0:
                _restore_collector()


def _restore_collector() -> None:
    global _gc_saved
    saved, _gc_saved = _gc_saved, None
    if saved is not None and gc.get_threshold()[0] == _DEFERRED:   # else: the application's
        gc.set_threshold(*saved)


def _after_fork() -> None:
    global _lock, _saved, _gc_holders
    _lock = threading.Lock()
    if _holders:   # the holders were threads of the parent: none of them runs here
        _holders.clear()
        if _saved is not None:
            sys.setswitchinterval(_saved)
    _saved = None
    _gc_holders = 0
    _restore_collector()
