"""The engine: apply, revert and status under one lock; the path of an apply reads here.

apply(patch) runs in four steps, and nothing is changed before step 3:

1. check (``check.py``): every module plan is derived again from the patch's own
   sources (``_defs.diff_module``) and must equal the change list the builder wrote;
   restart-required changes, and hook-needing changes without hooks, refuse.
   Leaves: ``{module: ModulePlan}``, the applied patches it replaces, its hooks.
2. prepare (``prepare.py``), per loaded module: compile baseline and fixed source
   here, match every live function of the module to the baseline by qualname and
   structure (run-pre matching), evaluate new and changed definitions into scratch
   namespaces, and turn all of it into a list of ``commit.Op``. Leaves: one
   ``_ModuleTxn`` per module (its ops, its late statements, what to watch).
3. commit (``commit.py``): ``commit.run`` performs every op in one C call.
4. post (``post.py``): re-evaluate module objects whose construction changed (a
   second, equally atomic commit), run post-apply hooks, report what still refers
   to the old objects; any failure undoes 3 and 4.
5. verify (``verify.py``): the state the patch's manifest names (fresh imports of
   both releases, at build) must now equal the fixed release's, path by path, where
   it equalled the baseline's before step 3 (taken after step 2); a path that does
   not undoes 3 and 4 and refuses (``StateDiverges``).

Modules the patch names but the process has not imported are *pending*: the import
hook (``_hook``) patches them the moment they are imported, by calling
``patch_on_import`` here, which it receives with every ``_hook.refresh`` (the hook
never imports the engine); a module patched in place that executes again (a reload) comes
back through the hook and is patched again. revert (``reverting.py``) and status
(``reporting.py``, which verifies the live code rather than trusting the records) are the
other entry points.

Layers (imports run downward only; ``tests/runtime/test_import_graph.py``):
  this package            the entry points, the lock, the order of the steps
  check, prepare, post,   the steps; each hands its result forward as data and
  reverting, reporting    never imports a later step
  _scratch, _refgraph,    shared analysis: evaluating statements in scratch
  _activeness,            namespaces, the reference graph (importers, lru wrappers,
  _patchhooks             stale caches, from-imports), running old code, patch hooks
  _objects                objects built before the patch, frames of old callers
  _state, commit          the records (Result, _ModuleTxn, _Record, _applied), the
                          ops and the one-C-call commit; they import no other
                          engine module
Enters: a verified ``patchfile.Patch``. Leaves: a ``Result`` (or a ``RefusedError``:
nothing changed; ``RolledBack``: started, failed, every change undone).
Invariant: every entry point holds ``_LOCK``; a fork waits for it (below).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
import threading
import time
import types
import warnings
from typing import Any, Dict, List, Optional

from .. import _enginelock, _freethreaded, _hook, _interps, _members, _units
from . import commit as _commit
from .commit import MISSING
from ..errors import (DeadlinePassed, RestartRequired, RevertedByApplication, RolledBack,
                      SutureError, UnitsBusy)
from ..patchfile import Patch
from . import _objects, _oldcalls
from ._activeness import _settle, _wait_quiescent, active
from ._patchhooks import _migrate, _run_hook, _unmigrate
from ._refgraph import _stale_caches
from ._scratch import _import_source
from ._state import import_refused as _import_refused
from ._state import live_module as _live_module, running_as_main as _running_as_main
from ._state import (HookContext, Result, _ModuleTxn, _Record, _added_entries, _added_index,
                     _applied, _applied_index, _fine_switching, _find, _forget_modules,
                     _own_dict, _pending_index, _walks,
                     drop_shadow, shadow)
from ._state import reverted as _reverted_listeners
from .check import (_check, _load_hooks, _loaded, _plan, _replaced_by, _resolved, _with_sources,
                    importing as _importing, is_main as _is_main, script_of as _script_of)
from .post import _late, _late_order, _leftovers
from .prepare import _prepare
# The modules of revert and status are named reverting and reporting: a submodule named
# like a function of this package would be shadowed by it (``import
# suture.runtime.engine.revert as m`` would give the function).
from . import reporting as _reporting, reverting as _reverting, verify as _verify
from .reverting import _added_module_removals

_reporting.state_check = _verify.reset_paths   # status checks module state too


__all__ = ["apply", "revert", "status", "applied_ids", "patch_on_import", "on_import_refused",
           "on_reverted",
           "shadow", "drop_shadow",
           "HookContext", "Result"]

_LOCK = _enginelock.LOCK  # every engine entry point; take it through _lock()


# -- the engine lock and fork -------------------------------------------------------
#
# A fork while another thread holds _LOCK would give the child a lock held forever by
# a thread that does not exist there (every apply, revert and status then blocks),
# and, between a commit and its bookkeeping, patched code with no record. So a fork
# waits for the apply/revert in progress, as CPython's logging and concurrent.futures
# do for their locks: before=acquire, after_in_parent=release; but after_in_child
# releases too, where they re-initialise (docs/engine.md, "Fork"). The lock and its
# hooks live in ``_enginelock`` (why the child releases rather than re-creates, and the
# order of registration), so that the agent registers them at its start without
# importing the engine (issue 19).
# * A fork therefore waits as long as an apply/revert holds the lock: milliseconds
#   normally; the hooks' own time; up to ``wait_quiescent`` seconds, and up to
#   SETTLE_SECONDS for deferred deletions, when threads keep running old code
#   (holding the lock while waiting keeps what was prepared valid). A forking thread
#   that itself runs that old code makes those waits time out, then it forks.
# * _hook's state lock is only ever taken under _LOCK, so it is free at fork too.

_fork_holds = _enginelock.fork_holds   # thread ident -> acquisitions by before-fork hooks
_lock = _enginelock.lock               # the engine lock, fork hooks registered on first use


# -- public entry points -------------------------------------------------------

def apply(patch: Patch, *, wait_quiescent: Optional[float] = None,
          restricted: bool = False, deadline: Optional[float] = None) -> Result:
    _check_deadline(patch.short_id, patch.id, "apply", deadline)   # past already: no work
    # No GIL, no atomic commit: refused before the lock, the hook or any step (SUT-E218).
    _freethreaded.check("apply", patch.id, patch.short_id)
    with _lock(), _fine_switching():
        _walks.clear()
        _walks["scope"] = True
        try:
            result = _apply_locked(patch, wait_quiescent, restricted, deadline)
        finally:
            _walks.clear()   # heap walks are shared within one apply, never across
            _units.reopen()
    _finish_importing(patch.id)
    return result


FINISH_IMPORT_SECONDS = 60.0


def _finish_importing(patch_id: str) -> None:
    """A module of the patch that another thread was still importing when the patch was
    applied, by an import that began before the hook served it (``check._loaded``), is
    patched as soon as that import ends, by a daemon thread that looks every 10 ms for up
    to ``FINISH_IMPORT_SECONDS`` (``status`` looks too, whenever it is asked)."""
    rec = _applied.get(patch_id)
    if rec is None:
        return
    # (and a script not yet past its definitions, which may be a pending module's file
    # running as __main__: check.script_of)
    busy = [n for n, state in rec.modules.items() if state == "pending import"
            and _importing(sys.modules.get(n) or _script_of(n))]
    if not busy:
        return

    def finish() -> None:
        deadline = time.monotonic() + FINISH_IMPORT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.01)
            if not any(_importing(sys.modules.get(n) or _script_of(n)) for n in busy):
                break
        with _lock():
            if _applied.get(patch_id) is rec:
                _imported_meanwhile(rec)
                _serve()

    _interps.background(finish, "suture-finish-import")


def _apply_locked(patch: Patch, wait_quiescent: Optional[float], restricted: bool,
                  deadline: Optional[float] = None) -> Result:
    if patch.id in _applied:
        return _apply(patch, wait_quiescent, deadline=deadline)
    # Step 0, before anything (even the hook below) changes: every module the patch
    # touches must belong to the distribution it names (_members; docs/security.md).
    owner, note = _members.check(patch, restricted)
    added = [m.name for m in patch.modules if m.action == "add"]
    # Imports do not wait for the engine lock: any thread (the application's, or this one
    # running a hook or a fixed module's top level) may import a module of this patch while
    # it is applied. So the hook serves the patch's modules *before* _apply takes its one
    # look at sys.modules (``_loaded``): a module imported after that look goes through the
    # hook and is patched by ``patch_on_import`` once the patch is recorded (it waits for
    # the engine lock); one imported before it is prepared like any loaded module.
    # A fixed module may also import, at module level, a module this same patch adds: the
    # hook serves the added modules from the start too. If the patch does not end up
    # applied, the added modules imported meanwhile are forgotten again.
    # Rejected: holding the import lock for the whole apply (an application thread that
    # holds a module lock while our hooks import that module deadlocks with us).
    loaded = set(sys.modules)
    pending = {m.name: patch.id for m in patch.modules
               if m.action != "add" and m.name not in loaded}
    _hook.refresh(dict(_pending_index(), **pending),
                  dict(_added_index(), **_added_entries(patch)), patch_on_import,
                  _applied_index())
    try:
        return _apply(patch, wait_quiescent, owner, note, deadline)
    finally:
        if patch.id not in _applied:
            _forget_modules([n for n in added if n not in loaded])
            _serve()


def _apply(patch: Patch, wait_quiescent: Optional[float],
           owner: Optional[_members.Owner] = None, note: str = "",
           deadline: Optional[float] = None) -> Result:
    with _lock():
        if patch.id in _applied:
            rec = _applied[patch.id]
            gone = _reporting.drift(rec)
            if gone:   # the record no longer holds: apply again what the application reverted
                return _reapply(rec, gone)
            return Result(patch.id, "already applied", modules=dict(rec.modules))
        # One look at which modules are loaded, used by every step below: a module
        # imported while we work must not be "not loaded" to one step and "loaded" to the
        # next (a compact module then had no plan: SUT-E999 KeyError, issue 13).
        loaded = _loaded(patch)
        given = patch
        patch = _with_sources(given, loaded)
        plans = _check(patch)
        # A new statement of a loaded module may import a module of this patch that this
        # process has not imported (``from . import sql`` and then ``sql.Literal``): as a
        # fresh import of the fixed release would, import it now, so that it is prepared
        # and patched with the rest instead of arriving unpatched in the middle.
        wanted = _imported_by_new_statements(patch, plans, loaded)
        if wanted:
            for name in wanted:
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - left pending; its import will say why
                    continue
            loaded = _loaded(given)
            patch = _with_sources(given, loaded)
            plans = _check(patch)
        replaced = _replaced_by(patch)
        hooks = _load_hooks(patch)
        rec = _Record(patch, hooks)
        rec.owner = owner
        if note:
            rec.notes.append(note)
        rec.rewind = {(id(o.obj), o.key): o.old for r in replaced for o in r.ops
                      if o.kind != "call"}
        rec.rewound_files = {f for r in replaced for f in r.filenames.values()}
        txns: List[_ModuleTxn] = []
        for mp in patch.modules:
            module = loaded.get(mp.name)
            if mp.action == "add":
                rec.modules[mp.name] = "applied" if module is not None else "pending add"
                continue
            if module is None:
                rec.modules[mp.name] = "pending import"
                continue
            if mp.name != "__main__" and _is_main(module):
                _as_main(rec, mp.name, module)
            txns.append(_prepare(rec, mp, module, plans[mp.name]))
        for t in txns:
            rec.modules[t.name] = t.state
        live = [t for t in txns if t.state == "applied"]
        if txns and not live and not rec.pending():
            return Result(patch.id, "already fixed", modules=dict(rec.modules),
                          notes=["the running code already equals the fixed code; nothing "
                                 "was changed"])
        if live:
            live[-1].ops.extend(_stale_caches(live))
        for t in live:
            rec.old_codes.update(t.old_codes)
            rec.filenames[t.name] = t.filename
        rec.plans = dict(plans)
        # What exists before the patch (_objects): derived attributes commit with the code;
        # objects lacking other state the fixed code reads, and frames of old callers that
        # would call a changed callee the old way, refuse (counted again after the commit).
        risky = _objects_before(rec, live, loaded)
        hazards = _objects.hazard_codes(
            {t.name: plans[t.name] for t in live}, rec.old_codes,
            {t.name: str((_own_dict(loaded[t.name]) or {}).get("__package__") or "")
             for t in live})
        migrations = _objects.migrated_classes(hooks, "MIGRATIONS")
        found = _objects.at_risk([(c, d) for m, c, d in risky if f"{m}:{d.cls}" not in migrations])
        if found:
            raise _objects.refuse_objects(patch.short_id, found, "apply", patch.id)
        _objects.wait_frames(hazards, _objects.FRAME_WAIT_SECONDS if wait_quiescent is None
                             else wait_quiescent, patch.short_id, patch.id)
        # Step 5's "before": the live state, taken before anything (hooks included) changes.
        state_before = _verify.before(patch, {t.name: loaded[t.name] for t in live})
        if wait_quiescent is not None:
            _wait_quiescent(rec, wait_quiescent)
        _before_commit(patch.short_id, patch.id, "apply", wait_quiescent, deadline)
        ctx = HookContext(patch)
        _run_hook(rec, "pre_apply", ctx, refuse=True)
        _migrate(rec)
        found = _objects.at_risk([(c, d) for _, c, d in risky])
        if found:   # a migration that left objects without what it was to set
            _unmigrate(rec)
            raise _objects.refuse_objects(patch.short_id, found, "apply", patch.id)
        if rec.migrated:
            _verify.excuse(state_before, _verify.before(
                patch, {t.name: loaded[t.name] for t in live}))
        ops = [o for t in live for o in t.first_ops] + [o for t in live for o in t.ops]
        # Replacing a cumulative patch: its undo and our changes form one commit, and
        # our undo log must lead back to the original objects, not to its versions.
        before = [o for r in reversed(replaced) for o in r.ops + _added_module_removals(r, patch)]
        for o in ops:
            if o.kind != "call" and (id(o.obj), o.key) in rec.rewind:
                o.old = rec.rewind[(id(o.obj), o.key)]
        # Deleting a name that a running frame of the old code may still read would
        # raise NameError/AttributeError in that frame: deletions wait for quiescence.
        deletions = [o for o in ops if o.kind != "call" and o.new is MISSING
                     and o.old is not MISSING]
        dropped = {id(o) for o in deletions}
        try:
            rec.pause_ns = _commit_ops([o for o in ops if id(o) not in dropped], live, before)
            rec.ops = ops
            # One late commit per module, in import order: a module's late statements
            # may import what another module's late statements bind (a re-export chain).
            for t in _late_order(live):
                late_ops = _late(rec, [t])
                if late_ops:
                    rec.pause_ns = max(rec.pause_ns, _commit_ops(late_ops, [t]))
                    rec.ops = rec.ops + late_ops
        except BaseException as exc:
            _commit.restore(rec.ops or ops)   # what committed (a failed commit undid itself)
            _commit.reapply(before)
            _unmigrate(rec)
            if isinstance(exc, SutureError):
                raise
            if isinstance(exc, TypeError) and any(o.key == "__bases__" for t in live
                                                  for o in t.first_ops):
                raise RestartRequired(
                    f"Patch {patch.short_id} ({patch.describe()}) cannot be applied live: "
                    f"a class cannot take its new bases ({exc}). Nothing was changed.",
                    details={"patch": patch.id}) from exc
            raise RolledBack(f"Applying patch {patch.short_id} failed and was rolled back: "
                             f"{type(exc).__name__}: {exc}", details={"patch": patch.id}) from exc
        # An object built, or an old caller entered, between the look above and the commit.
        found = _objects.at_risk([(c, d) for _, c, d in risky])
        busy = active(hazards) if hazards else []
        if found or busy:
            _commit.undo(rec.ops)
            _commit.reapply(before)
            _unmigrate(rec)
            raise (_objects.refuse_objects(patch.short_id, found, "apply", patch.id) if found
                   else _objects.refuse_frames(patch.short_id, busy, hazards, 0, patch.id))
        try:
            _run_hook(rec, "post_apply", ctx, refuse=False)
        except BaseException as exc:
            _commit.undo(rec.ops)
            _commit.reapply(before)
            _unmigrate(rec)
            raise RolledBack(f"post_apply hook of patch {patch.short_id} failed; the patch was "
                             f"rolled back: {type(exc).__name__}: {exc}",
                             details={"patch": patch.id}) from exc
        try:
            # What only the state manifest shows still differs from a fresh import of the
            # fixed release (hooks included), where its effect can be derived: one more
            # atomic commit.
            # (the process-wide registries only when a module of the patch is loaded: the
            # filters and names are its import's doing)
            fix_ops = _verify.repair(state_before, live, loaded, deletions) + (
                _verify.aliases(patch) + _verify.filters(patch) if live else [])
            fix_dels = [o for o in fix_ops if o.kind != "call" and o.new is MISSING
                        and o.old is not MISSING]
            deletions += fix_dels   # they wait too
            fix_now = [o for o in fix_ops if o not in fix_dels]
            if fix_now:
                rec.pause_ns = max(rec.pause_ns, _commit_ops(fix_now, live))
            rec.ops = rec.ops + fix_ops
        except BaseException as exc:
            _commit.undo(rec.ops)
            _commit.reapply(before)
            _unmigrate(rec)
            if isinstance(exc, SutureError):
                raise
            raise RolledBack(f"Making patch {patch.short_id}'s state equal a fresh import of the "
                             f"fixed release failed, and the patch was rolled back: "
                             f"{type(exc).__name__}: {exc}", details={"patch": patch.id}) from exc
        verdicts = _verify.after(state_before, {t.name: loaded[t.name] for t in live},
                                 deletions, {k: v for t in live for k, v in t.forwarded.items()})
        diverged = _verify.refusal(patch, verdicts)
        if diverged is not None:
            _commit.undo(rec.ops)
            _commit.reapply(before)
            _unmigrate(rec)
            raise diverged
        rec.verified = {v.module: v.summary() for v in verdicts}
        _units.reopen()   # committed and verified: units may start again (on new code)
        for name in rec.verified:
            if _is_main(loaded.get(name)):
                # the manifest is from fresh imports by name, which skip the main block
                rec.verified[name] += ("; runs as __main__: what its `if __name__ == "
                                       "\"__main__\":` block built at start is in no fresh "
                                       "import and is not compared")
        for t in live:
            rec.notes.extend(t.notes)
            rec.notes.extend(_leftovers(t))
        rec.notes.extend(_settle(deletions, rec.old_codes, undo=False))
        rec.caveats = [f"{m.name}:{c.qualname}: {c.reason}" for m in patch.modules
                       for c in m.changes if c.verdict == "caveat"]
        for r in replaced:
            _oldcalls.forget(r)
            del _applied[r.patch.id]
            rec.notes.append(f"replaced patch {r.patch.short_id} (same target and baseline)")
        rec.rewind = {}
        for t in live:
            _reporting.snapshot(rec, t.name, loaded[t.name])
        _applied[patch.id] = rec
        _oldcalls.track(rec)
        _serve()
        _imported_meanwhile(rec)
        return Result(patch.id, "applied" if live or "applied" in rec.modules.values()
                      else "pending import",
                      modules=dict(rec.modules), pause_ns=rec.pause_ns, ops=len(rec.ops),
                      caveats=rec.caveats, notes=rec.notes, verified=dict(rec.verified))


def _as_main(rec: _Record, name: str, module: types.ModuleType) -> None:
    """``name`` is not imported here but runs as ``__main__`` (check.running_as_main): the
    file found by its path or spec must be the named distribution's too, as an imported
    module's is (the step-0 check looked by name only), and the result says where."""
    if rec.owner is not None:
        _members.check_loaded(rec.patch, rec.owner, name, module)
    rec.notes.append(f"{name} runs here as __main__ (the script {getattr(module, '__file__', '?')})"
                     f": patched there; its `if __name__ == \"__main__\":` block and top level "
                     "are not re-run, and a later `import " + name + "` by name would load an "
                     "unpatched second copy")


def _objects_before(rec: _Record, txns: List[_ModuleTxn], loaded: Dict[str, types.ModuleType]
                    ) -> List[Any]:
    """Add to each txn the ops that install its derived attributes; return (module, live
    class, delta) for the state objects may lack that must be counted instead."""
    risky: List[Any] = []
    for t in txns:
        assert t.plan is not None
        module = loaded[t.name]
        ops, left, notes = _objects.lazy_ops(module, t.plan, "apply", rec.patch.short_id)
        t.ops.extend(ops)
        t.notes.extend(notes)
        for d in left:
            cls = _objects.live_class(module, d.cls)
            if cls is not None:
                risky.append((t.name, cls, d))
    return risky


def _imported_by_new_statements(patch: Patch, plans: Dict[str, Any],
                                 loaded: Dict[str, types.ModuleType]) -> List[str]:
    """Modules of ``patch`` not imported here that the new module-level statements of its
    loaded modules import (``import m``, ``from pkg import m``, ``from m import x``)."""
    names = {m.name for m in patch.modules if m.action != "add"}
    out: List[str] = []
    for name, module in loaded.items():
        plan = plans.get(name)
        if plan is None:
            continue
        package = str((_own_dict(module) or {}).get("__package__") or "")
        for stmt in plan.exec_stmts:
            for node in ast.walk(stmt):
                found: List[str] = []
                if isinstance(node, ast.Import):
                    found = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    source = _import_source(node, package)
                    found = [source] + [f"{source}.{a.name}" for a in node.names]
                out += [n for n in found if n in names and n not in loaded and n not in out]
    return out


def _imported_meanwhile(rec: _Record) -> None:
    """Patch the modules of ``rec`` still "pending import" that were imported, and have
    finished executing, while it was applied: by this thread (a hook, a fixed module's top
    level), or by a thread whose import began before the hook served them. One still
    executing in another thread came through the hook and is patched when it finishes.
    A refusal here is the module's state, as with the hook (``patch_on_import``)."""
    for name, state in list(rec.modules.items()):
        module = sys.modules.get(name)
        if state != "pending import":
            continue
        if module is None:
            # a script that began running it as __main__ after the apply (an agent that
            # applied the store before the script's body started): never left "pending
            # import" while it runs (docs/engine.md, "Scripts (__main__)")
            module = _running_as_main(name)
            if module is None:
                continue
            rec.notes.append(f"{name} runs here as __main__ (the script "
                             f"{getattr(module, '__file__', '?')}): patched there after it started")
        if _importing(module):
            continue
        patch_on_import(name, module)


def revert(patch_id: str, force: bool = False, deadline: Optional[float] = None) -> Result:
    with _lock(), _fine_switching():
        rec = _find(patch_id)
        _freethreaded.check("revert", rec.patch.id, rec.patch.short_id)
        _before_commit(rec.patch.short_id, rec.patch.id, "revert", None, deadline)
        try:
            return _reverting.revert(rec, _serve, force)
        finally:
            _units.reopen()


UNIT_WAIT_SECONDS = 2.0


def _before_commit(short_id: str, patch_id: str, op: str, wait: Optional[float],
                   deadline: Optional[float]) -> None:
    """The last look before anything changes (under the engine lock): units of work
    (runtime/_units.py) and the client's deadline. Leaves the units' gate closed when it
    returns; the caller reopens it after its commit (and in ``finally``).

    ``deadline`` is wall-clock epoch seconds (time.time()), set by a client on the same
    host, so the two clocks are the same clock; a step of the clock (NTP, by hand) moves
    it. Checked here, after every wait, and not later: the hooks, the commit and the
    verification after it take milliseconds, and the client waits a grace period past
    the deadline for the answer (docs/protocol.md, "Deadline")."""
    done = "applied" if op == "apply" else "reverted"
    if _units.used:
        seconds = UNIT_WAIT_SECONDS if wait is None else wait
        busy = _units.close(seconds, threading.get_ident())
        if busy:
            where = ", ".join(b["thread"] for b in busy[:5])
            raise UnitsBusy(
                f"Patch {short_id} was not {done}: after {seconds:g} s "
                f"threads were still inside a unit of work ({where}). Nothing was changed; "
                "retry later, or give --wait-quiescent more seconds.",
                details={"patch": patch_id, "threads": busy, "seconds": seconds})
    try:
        _check_deadline(short_id, patch_id, op, deadline)
    except DeadlinePassed:
        _units.reopen()
        raise


def _check_deadline(short_id: str, patch_id: str, op: str, deadline: Optional[float]) -> None:
    now = time.time()
    if deadline is not None and now >= deadline:
        done = "applied" if op == "apply" else "reverted"
        raise DeadlinePassed(
            f"Patch {short_id} was not {done}: the client's deadline had passed "
            f"{now - deadline:.1f} s before the commit (the process was too busy to finish "
            "in time). Nothing was changed; retry.",
            details={"patch": patch_id, "deadline": deadline, "now": now, "op": op})


def applied_ids() -> List[str]:
    with _lock():
        return list(_applied)


def status() -> Dict[str, Any]:
    with _lock():
        # modules that were still importing when their patch was applied, and whose import
        # did not come through the hook (it began before): patched now that it has ended
        for rec in list(_applied.values()):
            _imported_meanwhile(rec)
        patches, old = _reporting.records()
        _tell_reverted(patches)
    running = active(old)   # the heap walk runs unlocked
    for p in patches:   # drained_at, and old_calls while counting (_oldcalls)
        p.update(_oldcalls.report(p["id"], [a for a in running if a.get("patch") == p["id"]]))
    # unpatchable: None, or why every apply is refused here (a free-threaded build, SUT-E218)
    counting, why_not = _oldcalls.state()
    return {"patches": patches, "active": running, "unpatchable": _freethreaded.report(),
            "old_calls": {"counting": counting, "unavailable": why_not}}


def count_old_calls(on: bool) -> Optional[str]:
    """Count calls into the code every applied patch replaced (and patches applied from now
    on), or stop; None, or why counting is impossible here (engine/_oldcalls.py)."""
    with _lock():
        return _oldcalls.counting(on, list(_applied.values()))


def _tell_reverted(patches: List[Dict[str, Any]]) -> None:
    """Tell the ``on_reverted`` listeners (the agent's audit log) of each module found
    reverted by the application, once per patch, module and finding."""
    for p in patches:
        rec = _applied.get(p["id"])
        for name, verdict in p["live"].items():
            if rec is None or verdict == "verified" or f"{name}\0{verdict}" in rec.told:
                continue
            rec.told.add(f"{name}\0{verdict}")
            for listener in list(_reverted_listeners):
                try:
                    listener(name, rec.patch.id, "SUT-E211", verdict)
                except BaseException:  # noqa: BLE001 - status goes on regardless
                    pass


def on_reverted(listener: Any) -> None:
    """Call ``listener(module, patch_id, code, message)`` the first time ``status()`` finds a
    module of an applied patch reverted by the application (SUT-E211: the process runs old
    code there again). Registering the same listener twice registers it once."""
    if listener not in _reverted_listeners:
        _reverted_listeners.append(listener)


def _reapply(rec: _Record, gone: Dict[str, str]) -> Result:
    """``apply`` of a patch whose record no longer holds (``reporting.drift``): each module
    the application reverted is prepared and committed again, against the objects it holds
    now, into the *same* record. Its ops are appended to the undo log, so a revert undoes
    them first and then the original ones: every object either version touched ends on the
    code it had before the patch. Rejected: dropping the stale record and applying afresh
    (the objects it still holds fixed, aliases elsewhere, would stay fixed after a revert,
    and its undo log would be lost); undoing it first (the undo would write the pre-patch
    objects back over what the application put there). A refusal raises (this apply
    changed nothing more); the record then still says what status reports."""
    notes: List[str] = []
    for name, how in gone.items():
        module = _live_module(name)
        if module is None:
            continue
        _patch_module(rec, name, module, again=True, refuse=True)
        notes.append(f"applied again to {name}, which was {_reporting.REVERTED}: {how}")
    rec.notes.extend(notes)
    _serve()
    # Never "applied" on a module that still runs what the application put back: a change
    # the plan makes only against the baseline (module state set back under fixed
    # functions) is not made a second time by the preparation above.
    still = {n: h for n, h in _reporting.drift(rec).items() if n in gone}
    if still:
        where = "; ".join(f"{n}: {h}" for n, h in sorted(still.items()))
        raise RevertedByApplication(
            f"Patch {rec.patch.short_id} was applied here, and the application has since "
            f"reverted part of it ({where}). Applying it again did not restore that: the "
            f"process still runs it. Restart the process on the fixed release, or set it "
            f"back by hand.", details={"patch": rec.patch.id, "modules": still})
    return Result(rec.patch.id, "applied", modules=dict(rec.modules), pause_ns=rec.pause_ns,
                  ops=len(rec.ops), caveats=rec.caveats, notes=notes,
                  verified=dict(rec.verified))


def _serve() -> None:
    """Bring the import hook in line with ``_applied``: what is pending, what is added,
    what is patched in place (served again when it executes again: a reload)."""
    _hook.refresh(_pending_index(), _added_index(), patch_on_import, _applied_index())


# -- step 3 as apply calls it; import-time patching (check, prepare, commit, post) --

def _commit_ops(ops: List[Any], live: List[_ModuleTxn], before: List[Any] = ()) -> int:  # type: ignore[assignment]
    if any("plain and generator" in n for t in live for n in t.notes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _commit.run(ops, before)
    return _commit.run(ops, before)


def patch_on_import(name: str, module: types.ModuleType) -> None:
    """Called by the import hook right after a pending module executed, or a module patched
    in place executed again (``importlib.reload``, IPython's autoreload, a re-import after
    ``del sys.modules[name]``): the file on disk, the baseline, ran again, so the module is
    patched again, by every record that patched it, in the order they were applied."""
    with _lock():
        for rec in _applied.values():
            state = rec.modules.get(name)
            if state == "pending import":
                _patch_module(rec, name, module)
            elif state == "applied" and name in rec.live and sys.modules.get(name) is module:
                _patch_module(rec, name, module, again=True)
            _serve()


def _patch_module(rec: _Record, name: str, module: types.ModuleType, again: bool = False,
                  refuse: bool = False) -> None:
    """Prepare and commit ``rec``'s changes to ``module``, just imported (or, ``again``,
    executed again or reverted by the application: then functions already on the fixed
    code are left as they are). The ops join ``rec``'s undo log. A refusal becomes the
    module's state (the module runs unpatched: status reports it exposed, the listeners
    record it), or is raised with ``refuse``."""
    mp = next(m for m in rec.patch.modules if m.name == name)
    try:
        _freethreaded.check("import", rec.patch.id, rec.patch.short_id)
        if rec.owner is not None:   # the file found may not be the one checked at apply
            _members.check_loaded(rec.patch, rec.owner, name, module)
        if mp.compact:
            mp = _resolved(rec.patch, mp, module)
            rec.patch = dataclasses.replace(rec.patch, modules=tuple(
                mp if m.name == name else m for m in rec.patch.modules))
        plan = _plan(rec.patch, mp)
        txn = _prepare(rec, mp, module, plan, again=again)
        if txn.state == "applied":
            rec.plans[name] = plan
            risky = _objects_before(rec, [txn], {name: module})
            found = _objects.at_risk([(c, d) for _, c, d in risky])
            if found:   # objects its own import built with the old __init__
                raise _objects.refuse_objects(rec.patch.short_id, found, "apply",
                                              rec.patch.id, stub=False)
            state_before = _verify.before(rec.patch, {name: module})
            ops = txn.first_ops + txn.ops
            # Deletions last, as in apply: a late statement may read a name the
            # fixed module deletes after using it (``del _helper``, case 64).
            dels = [o for o in ops if o.kind != "call" and o.new is MISSING
                    and o.old is not MISSING]
            ops = [o for o in ops if id(o) not in {id(d) for d in dels}]
            _commit_ops(ops, [txn])
            late: List[Any] = []
            try:
                late = _late(rec, [txn])
                if late:
                    _commit_ops(late, [txn])
                if dels:
                    _commit_ops(dels, [txn])
                    late = late + dels
                fix_ops = _verify.repair(state_before, [txn], {name: module}) \
                    + _verify.aliases(rec.patch) + _verify.filters(rec.patch)
                if fix_ops:
                    _commit_ops(fix_ops, [txn])
                    late = late + fix_ops
                verdicts = _verify.after(state_before, {name: module}, (),
                                         dict(txn.forwarded))
                diverged = _verify.refusal(rec.patch, verdicts)
                if diverged is not None:
                    raise diverged
            except BaseException:
                _commit.restore(ops + late)
                raise
            rec.verified.update({v.module: v.summary() for v in verdicts})
            rec.ops.extend(ops + late)
            rec.old_codes.update(txn.old_codes)
            _oldcalls.track(rec)
            rec.filenames[name] = txn.filename
        if txn.state == "applied" or again:
            _reporting.snapshot(rec, name, module)
        if again:
            rec.told = {k for k in rec.told if not k.startswith(f"{name}\0")}
            note = f"{name} was executed again (a reload) and patched again"
            if not refuse and note not in rec.notes:
                rec.notes.append(note)
        rec.modules[name] = "applied" if again else txn.state
    except SutureError as exc:
        if refuse:
            raise
        rec.modules[name] = f"refused at {'reload' if again else 'import'}: {exc.message}"
        for listener in list(_import_refused):
            try:
                listener(name, rec.patch.id, exc.code, exc.message)
            except BaseException:  # noqa: BLE001 - the import goes on regardless
                pass


def on_import_refused(listener: Any) -> None:
    """Call ``listener(module, patch_id, code, message)`` whenever a module imported after
    its patch was applied is refused at import (it then runs unpatched: the process is
    exposed). Registering the same listener twice registers it once."""
    if listener not in _import_refused:
        _import_refused.append(listener)


def _reset_for_tests() -> None:  # pragma: no cover - used by in-process tests only
    with _lock():
        _applied.clear()
        _hook.refresh({}, {}, patch_on_import)
