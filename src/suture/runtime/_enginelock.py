"""The engine lock and its fork hooks, without the engine (issue 19).

Every engine entry point holds ``LOCK`` (``engine._lock()``), and a fork waits for it
(docs/engine.md#fork). The agent must have these fork hooks registered *before* its
own, and before any apply can run on its thread (see the order below), but it must not
import the engine for that: the engine, the patch reader and their standard-library
imports are most of an idle agent's memory, and an idle agent never uses them. So the
lock and the hooks live here, in a module that imports only ``os`` and ``threading``;
the engine takes its lock from here, the agent calls ``register_fork_hooks()`` when it
starts, and ``_inherit`` reads ``fork_holds`` in a forked child without importing the
engine (an import in an at-fork hook would load the engine into every child).

Why the agent registers first (its hooks after these): before-fork hooks run in the
reverse order of registration, after-fork hooks in order. Registered first, the engine's
after-in-child hook releases the lock before the agent's starts the child's agent, whose
thread may need it at once; and ``_inherit``'s child hook, registered after the agent's,
sees ``fork_holds`` empty unless the forking thread held the lock itself.

The rest of the design is the engine's (docs/engine.md, "Fork"):

* the child releases, it does not re-create the lock. The thread that forks is the
  child's only thread and keeps its ident there, so it owns what its before-hook
  acquired. If it held the lock already (a hook or migration that forks), the
  re-entrant acquire does not block, and after the release the child still holds it
  once: it finishes the same apply/revert from where it forked, then lets go. A new
  lock would break that (its final release would fail, and the rest of the apply would
  run unlocked). Also, the agent's own after-in-child hook may already run a new agent
  thread waiting on this very lock object: it must be released, not replaced;
* registered once, on the first use of the engine or when the agent starts (importing
  this module registers nothing). Two threads registering at once may both register:
  harmless, since every before is paired with its after, and a thread never holds
  ``LOCK`` before the hooks are registered.

Standard library only; importing this module does nothing.
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:   # typing costs an idle agent 1.6 MiB: never imported at run time here
    from typing import ContextManager, Dict

__all__ = ["LOCK", "lock", "register_fork_hooks", "fork_holds"]

LOCK = threading.RLock()   # every engine entry point; take it through lock()

_registered = False
fork_holds: Dict[int, int] = {}   # thread ident -> acquisitions made by before-fork hooks


def lock() -> ContextManager[bool]:
    """The engine lock, with the fork hooks registered (on first use)."""
    if not _registered:
        register_fork_hooks()
    return LOCK


def register_fork_hooks() -> None:
    """Register the lock's fork hooks once (the agent calls it before registering its own)."""
    global _registered
    if _registered:
        return
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                            after_in_child=_after_fork)
    _registered = True


def registered() -> bool:
    return _registered


def _before_fork() -> None:
    # Counted before acquiring: if a signal handler raises while this waits, CPython
    # forks anyway and runs the after-hooks, whose release then fails harmlessly.
    me = threading.get_ident()
    fork_holds[me] = fork_holds.get(me, 0) + 1
    LOCK.acquire()


def _after_fork() -> None:
    me = threading.get_ident()
    held = fork_holds.pop(me, 0)
    if held > 1:
        fork_holds[me] = held - 1
    if held:
        try:
            LOCK.release()
        except RuntimeError:  # the before-hook was interrupted before it got the lock
            pass
