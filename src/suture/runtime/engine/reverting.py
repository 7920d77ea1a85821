"""Revert: undo an applied patch exactly, newest first.

Enters: the ``_Record`` to revert (found by the caller under the engine lock) and
``serve``, which brings the import hook in line once the record left ``_applied``.
Leaves: a ``Result``; ``_added_module_removals`` also gives apply the undo of the
modules a replaced patch added.
Invariant: a patch is reverted only when no newer patch touches its modules
(``RevertOrderError`` otherwise, nothing changed); names it added go only once no
frame runs its code (``_activeness._settle``).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Tuple

from . import commit as _commit
from .commit import MISSING, Op
from ..errors import RevertOrderError
from ..patchfile import Patch
from ._activeness import _installed_codes, _settle
from . import _objects, _oldcalls
from ._patchhooks import _migrate, _run_hook
from ._state import HookContext, Result, _Record, _applied, _own_dict, live_module


def revert(rec: _Record, serve: Callable[[], None], force: bool = False) -> Result:
    """Undo ``rec`` (under the engine lock); ``serve()`` brings the import hook in line
    with ``_applied`` once ``rec`` has left it. Objects built while ``rec`` was applied
    that lack state the restored code reads refuse the revert unless ``force``
    (``_objects``): derived attributes are installed with the undo and stay."""
    touched = set(rec.modules)
    newer = [r for r in list(_applied.values())[list(_applied).index(rec.patch.id) + 1:]
             if touched & {m for m, s in r.modules.items() if s == "applied"}]
    if newer:
        raise RevertOrderError(
            f"Patch {rec.patch.short_id} cannot be reverted while newer patch "
            f"{newer[-1].patch.short_id} patches the same modules; revert that first "
            f"(`suture revert {newer[-1].patch.short_id}`). Nothing was changed.",
            details={"patch": rec.patch.id, "newer": [r.patch.id for r in newer]})
    lazy, risky, kept = _before_revert(rec)
    found = _objects.at_risk(risky)
    if found and not force:
        raise _objects.refuse_objects(rec.patch.short_id, found, "revert", rec.patch.id)
    dropped = _objects.recorded(kept)
    if dropped and not force:
        raise _objects.refuse_dropped(rec.patch.short_id, dropped, rec.patch.id)
    found += dropped
    ctx = HookContext(rec.patch)
    _run_hook(rec, "pre_revert", ctx, refuse=True)
    _migrate(rec, "REVERT_MIGRATIONS")
    rec.migrated.clear()   # kept: a revert's migrations are not undone
    removals = _added_module_removals(rec)
    log = rec.ops + removals
    # Names the patch added are read by patched frames that may still be running:
    # they go only once no frame runs the patched code (see apply).
    additions = [o for o in log if o.kind != "call" and o.old is MISSING
                 and o.new is not MISSING]
    added = {id(o) for o in additions}
    undo = [o for o in log if id(o) not in added]
    calls = [o for o in undo if o.kind == "call"]
    _oldcalls.forget(rec)   # the old code is about to run again, legitimately
    pause = _commit.run(lazy + calls, undo_first=undo) if lazy else \
        _commit.undo(undo) if undo else 0
    del _applied[rec.patch.id]
    serve()
    notes = _settle(additions, _installed_codes(rec), undo=True)
    try:
        _run_hook(rec, "post_revert", ctx, refuse=False)
    except Exception as exc:
        notes.append(f"post_revert hook failed after the code was restored: {exc!r}")
    if found:
        notes.append("reverted with --force: " + "; ".join(
            f"{f['objects']} object(s) of {f['class']}: `{f['attribute']}` "
            + ("kept by the fixed code is dropped" if "values" in f
               else "is lacking, and the restored code reads it") for f in found[:5]))
    return Result(rec.patch.id, "reverted", modules={m: "reverted" for m in rec.modules},
                  pause_ns=pause, ops=len(rec.ops), notes=notes)


def _before_revert(rec: _Record) -> Tuple[List[Any], List[Tuple[type, Any]],
                                          List[Tuple[type, Any]]]:
    """Ops installing the derived attributes the restored code reads (kept after the
    revert); (class, delta) for the state to count instead, less what REVERT_MIGRATIONS
    sets; (class, delta) for state the fixed code keeps that the revert drops."""
    lazy: List[Any] = []
    risky: List[Tuple[type, Any]] = []
    kept: List[Tuple[type, Any]] = []
    migrations = _objects.migrated_classes(rec.hooks, "REVERT_MIGRATIONS")
    for name, plan in rec.plans.items():
        module = live_module(name)
        if module is None or rec.modules.get(name) != "applied":
            continue
        ops, left, _ = _objects.lazy_ops(module, plan, "revert", rec.patch.short_id)
        lazy += ops
        for d in left:
            cls = _objects.live_class(module, d.cls)
            if cls is not None and f"{name}:{d.cls}" not in migrations:
                risky.append((cls, d))
        for d in plan.instance_state:
            cls = _objects.live_class(module, d.cls)
            if d.direction == "apply" and cls is not None \
                    and f"{name}:{d.cls}" not in migrations:
                kept.append((cls, d))
    return lazy, risky, kept


def _added_module_removals(rec: _Record, keep: Optional[Patch] = None) -> List[Any]:
    """Ops whose *undo* takes the modules ``rec`` added out of sys.modules (unless ``keep`` adds them too)."""
    kept = {m.name for m in keep.modules if m.action == "add"} if keep else set()
    ops: List[Any] = []
    for m in rec.patch.modules:
        if m.action != "add" or m.name not in sys.modules or m.name in kept:
            continue
        ops.append(_InverseOp("item", sys.modules, m.name))
        parent, _, child = m.name.rpartition(".")
        if parent and parent in sys.modules \
                and (_own_dict(sys.modules[parent]) or {}).get(child) is sys.modules[m.name]:
            ops.append(_InverseOp("attr", sys.modules[parent], child))
    return ops


class _InverseOp(Op):
    """An op that exists only to be undone: revert removes what an import added."""

    def __init__(self, kind: str, obj: Any, key: str) -> None:
        super().__init__(kind, obj, key, MISSING)
        self.old, self.new = MISSING, self.old
