"""Units of work: an application marks them, and an apply commits between them (stdlib only).

docs/engine.md, "Consistency across functions of one patch". The commit is atomic across
threads, but a thread that called ``f`` before it and calls ``g`` after it sees old ``f``
and new ``g``. An application whose loop iteration must see one version of every
function of a patch wraps the iteration in ``with suture.runtime.unit(): ...``; an apply
(or revert) then closes a gate, waits until no thread is inside a unit, commits, and
opens the gate again. A thread that reaches ``unit()`` while the gate is closed waits
there, before its iteration starts, so it runs the iteration all-new.

Entering and the engine's check form a Dekker handshake, sequentially consistent under
the GIL: a thread first counts itself in, then looks at the gate; the engine first
closes the gate, then looks at the counts. Either the thread sees the gate closed (it
counts itself out and waits) or the engine sees the thread inside (it waits for it).
Each thread writes only its own key of ``_inside``, so no read-modify-write is shared.
Rejected: a process-wide counter (``n += 1`` is not atomic across threads); a lock taken
on every entry (a contended lock costs a GIL release per iteration in a busy program).

The engine holds the gate closed from just before the pre-apply hook to just after the
last commit and its verification; a unit entered meanwhile waits that long (normally
milliseconds). Nothing happens unless the application uses ``unit()``: then every apply
and revert of this process respects it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

_inside: Dict[int, int] = {}      # thread ident -> nesting depth of unit()
_open = threading.Event()
_open.set()
used = False                      # set by the first unit(): the engine looks only then
_closer: Optional[int] = None     # the thread that closed the gate (it passes: a hook of its
                                  # apply that enters a unit must not wait for itself)


@contextlib.contextmanager
def unit() -> Iterator[None]:
    """Mark one unit of work (e.g. one loop iteration): a patch's commit never falls
    inside it, so it runs every function of that patch in one version."""
    global used
    if not used:
        used = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
    me = threading.get_ident()
    depth = _inside.get(me, 0)
    if depth:                     # nested: the outer unit already holds the commit off
        _inside[me] = depth + 1
    else:
        while True:
            _inside[me] = 1
            if _open.is_set() or me == _closer:
                break
            del _inside[me]
            _open.wait()
    try:
        yield
    finally:
        depth = _inside.get(me, 1) - 1
        if depth:
            _inside[me] = depth
        else:
            _inside.pop(me, None)


def busy_threads() -> List[Dict[str, Any]]:
    names = {t.ident: t.name for t in threading.enumerate()}
    return [{"thread": names.get(ident, str(ident)), "depth": depth}
            for ident, depth in list(_inside.items()) if depth]


def close(seconds: float, me: Optional[int] = None) -> Optional[List[Dict[str, Any]]]:
    """Close the gate and wait up to ``seconds`` for every unit to end. None when none is
    running (the gate stays closed: reopen() it); else the threads still inside, and
    the gate is open again. ``me``: the calling thread, whose own unit (an apply from
    inside a unit) is not waited for."""
    global _closer
    _closer = me
    _open.clear()
    end = time.monotonic() + seconds
    while True:
        busy = [ident for ident, depth in list(_inside.items()) if depth and ident != me]
        if not busy:
            return None
        if time.monotonic() >= end:
            found = busy_threads()
            reopen()
            return found
        time.sleep(0.001)


def reopen() -> None:
    global _closer
    _closer = None
    _open.set()


def _after_fork() -> None:
    # Only the forking thread runs in the child: the others' units ended with them.
    me = threading.get_ident()
    for ident in [i for i in _inside if i != me]:
        del _inside[ident]
    _open.set()
