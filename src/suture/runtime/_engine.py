"""Preflight, apply or roll back whole, revert exactly; one lock for all of it.

apply(patch) runs in four steps, and nothing is changed before step 3:

1. check: every module plan is derived again from the patch's own sources
   (``_defs.diff_module``) and must equal the change list the builder wrote;
   restart-required changes, and hook-needing changes without hooks, refuse.
2. prepare, per loaded module: compile baseline and fixed source here, match
   every live function of the module to the baseline by qualname and structure
   (run-pre matching), evaluate new and changed definitions into scratch
   namespaces, and turn all of it into a list of ``_commit.Op``.
3. commit: ``_commit.run`` performs every op in one C call.
4. post: re-evaluate module objects whose construction changed (a second,
   equally atomic commit), run post-apply hooks; any failure undoes 3 and 4.

Modules the patch names but the process has not imported are *pending*: the
import hook (``_hook``) patches them the moment they are imported.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import copy
import dataclasses
import dis
import functools
import gc
import linecache
import os
import re
import sys
import threading
import time
import types
import warnings
import weakref
from types import CodeType, FunctionType
from typing import (AbstractSet, Any, ContextManager, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Set, Tuple)

from . import _codes, _commit, _defs, _hook, _members
from ._commit import MISSING, Call, Op
from .errors import (BaselineMismatch, HookFailed, NeedsHook, NotQuiescent,
                     PatchFormatError, RefusedError, RestartRequired, RevertOrderError,
                     RolledBack, SutureError, UnknownPatch, EXHAUSTED, os_cause,
                     os_failure)
from . import patchfile
from .patchfile import ModulePatch, Patch

_LOCK = threading.RLock()  # every engine entry point; take it through _lock()
_LRU_TYPE = type(functools.lru_cache()(lambda: None))
_LRU_IS_HEAP_TYPE = bool(_LRU_TYPE.__flags__ & (1 << 9))  # Py_TPFLAGS_HEAPTYPE
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


# -- looking at the application's objects without running its code --------------------
# The engine scans module globals, referrers and sys.modules: objects it did not make.
# isinstance() falls back to ``obj.__class__`` and getattr/hasattr run __getattribute__
# and __getattr__: on a lazy proxy (Django's settings, a LazyModule) that runs the
# application's code, which may raise or import. These never do.

@contextlib.contextmanager
def _fine_switching() -> Iterator[None]:
    """Let the application's threads in more often while a patch is prepared.

    Preparing runs Python code on the agent's thread for tens of milliseconds (parse,
    compile, diff, heap walks). With the default 5 ms switch interval, a thread serving
    a request waits up to 5 ms for the GIL each time it needs it back: an asyncio event
    loop or a sync worker stalls for most of the prepare (measured: 20-35 ms spikes under
    load, docs/performance.md). A 0.5 ms interval for the duration bounds each wait, at
    the cost of more switches. The commit itself is one C call, which no switch interval
    interrupts. The previous value is put back, even if the application changed it
    meanwhile (it would be overwritten: a documented limit).
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, _PREPARE_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


_PREPARE_SWITCH_INTERVAL = 0.0005


def _isa(obj: Any, classes: Any) -> bool:
    """isinstance() by the real type only."""
    return issubclass(type(obj), classes)


def _own_dict(obj: Any) -> Optional[Dict[str, Any]]:
    """``obj.__dict__`` as stored, without calling ``obj``'s __getattribute__."""
    try:
        d = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None
    return d if type(d) is dict else None


class Result:
    """What apply/revert did, as data (``to_dict`` crosses the agent socket)."""

    def __init__(self, patch_id: str, state: str, *, modules: Optional[Dict[str, str]] = None,
                 pause_ns: int = 0, ops: int = 0, caveats: Optional[List[str]] = None,
                 notes: Optional[List[str]] = None) -> None:
        self.patch_id = patch_id
        self.state = state
        self.modules = modules or {}
        self.pause_ns = pause_ns
        self.ops = ops
        self.caveats = caveats or []
        self.notes = notes or []

    def to_dict(self) -> Dict[str, Any]:
        return {"patch": self.patch_id, "state": self.state, "modules": dict(self.modules),
                "pause_ns": self.pause_ns, "ops": self.ops, "caveats": list(self.caveats),
                "notes": list(self.notes)}

    def __repr__(self) -> str:
        return f"<Result {self.patch_id[:12]} {self.state} modules={self.modules}>"


class _ModuleTxn:
    """Everything prepared for one module, not yet committed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "applied"
        self.ops: List[Any] = []
        self.first_ops: List[Any] = []        # __bases__ changes: may fail, so they go first
        self.old_codes: Dict[int, Tuple[CodeType, str]] = {}
        self.plan: Optional[_defs.ModulePlan] = None
        self.late_stmts: List[ast.stmt] = []
        self.fixed_tree: Optional[ast.Module] = None
        self.swapped: List[FunctionType] = []
        self.filename = ""
        self.notes: List[str] = []
        self.watch: List[Tuple[str, Any]] = []   # old objects whose leftover references we report
        self.changed_funcs: Set[int] = set()     # ids of functions whose code really changes
        self.cleared: Set[int] = set()           # ids of lru_cache wrappers cleared in the commit
        self.forwarded: Dict[int, FunctionType] = {}  # id(old method) -> the new one it forwards to
        self.sources: Dict[str, str] = {}        # fixed source of every module in the patch
        self.has_hooks = False                   # the patch carries a hook module


class _Record:
    """An applied patch: its undo log and what it knows about each module."""

    def __init__(self, patch: Patch, hooks: Optional[types.ModuleType]) -> None:
        self.patch = patch
        self.hooks = hooks
        self.ops: List[Any] = []
        self.modules: Dict[str, str] = {}
        self.filenames: Dict[str, str] = {}
        self.old_codes: Dict[int, Tuple[CodeType, str]] = {}
        self.caveats: List[str] = []
        self.notes: List[str] = []
        self.applied_at = time.time()
        self.pause_ns = 0
        self.migrated: List[Tuple[Any, Dict[str, Any], List[Tuple[Any, Any]]]] = []
        self.rewind: Dict[Tuple[int, str], Any] = {}   # original values under replaced patches
        self.rewound_files: Set[str] = set()
        # The distribution the patch names, as checked at apply (None: not checked, see
        # _members); modules imported later are checked against it too (patch_on_import).
        self.owner: Optional[_members.Owner] = None

    def pending(self) -> List[str]:
        return [m for m, s in self.modules.items() if s in ("pending import", "pending add")]


_applied: "collections.OrderedDict[str, _Record]" = collections.OrderedDict()


# -- the engine lock and fork -------------------------------------------------------
#
# A fork while another thread holds _LOCK would give the child a lock held forever by
# a thread that does not exist there (every apply, revert and status then blocks),
# and, between a commit and its bookkeeping, patched code with no record. So a fork
# waits for the apply/revert in progress, as CPython's logging and concurrent.futures
# do for their locks: before=acquire, after_in_parent=release; but after_in_child
# releases too, where they re-initialise (docs/engine.md, "Fork").
#
# * The child releases; it does not re-create the lock. The thread that forks is the
#   child's only thread and keeps its ident there, so it owns what its before-hook
#   acquired. If it held the lock already (a hook or migration that forks), the
#   re-entrant acquire does not block, and after the release the child still holds it
#   once: it finishes the same apply/revert from where it forked, then lets go. A new
#   lock would break that (its final release would fail, and the rest of the apply
#   would run unlocked). Also, the agent's own after_in_child hook, registered earlier
#   when the agent starts first, already runs a new agent thread that may be waiting on
#   this very lock object: it must be released, not replaced.
# * Registered once, lazily, on the first use of the engine (importing the runtime
#   registers nothing). Two threads using the engine for the first time at once may
#   both register: harmless, since every before is paired with its after, and a
#   thread never holds _LOCK before the hooks are registered.
# * A fork therefore waits as long as an apply/revert holds the lock: milliseconds
#   normally; the hooks' own time; up to ``wait_quiescent`` seconds, and up to
#   SETTLE_SECONDS for deferred deletions, when threads keep running old code
#   (holding the lock while waiting keeps what was prepared valid). A forking thread
#   that itself runs that old code makes those waits time out, then it forks.
# * _hook's state lock is only ever taken under _LOCK, so it is free at fork too.

_fork_hooks = False
_fork_holds: Dict[int, int] = {}   # thread ident -> acquisitions made by before-fork hooks


def _lock() -> ContextManager[bool]:
    """The engine lock, with the fork hooks registered (on first use)."""
    if not _fork_hooks:
        _register_fork_hooks()
    return _LOCK


def _register_fork_hooks() -> None:
    global _fork_hooks
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork,
                            after_in_child=_after_fork)
    _fork_hooks = True


def _before_fork() -> None:
    # Counted before acquiring: if a signal handler raises while this waits, CPython
    # forks anyway and runs the after-hooks, whose release then fails harmlessly.
    me = threading.get_ident()
    _fork_holds[me] = _fork_holds.get(me, 0) + 1
    _LOCK.acquire()


def _after_fork() -> None:
    me = threading.get_ident()
    held = _fork_holds.pop(me, 0)
    if held > 1:
        _fork_holds[me] = held - 1
    if held:
        try:
            _LOCK.release()
        except RuntimeError:  # the before-hook was interrupted before it got the lock
            pass


# -- public entry points -------------------------------------------------------

def apply(patch: Patch, *, wait_quiescent: Optional[float] = None,
          restricted: bool = False) -> Result:
    with _lock(), _fine_switching():
        _walks.clear()
        _walks["scope"] = True
        try:
            return _apply_locked(patch, wait_quiescent, restricted)
        finally:
            _walks.clear()   # heap walks are shared within one apply, never across


# Results of heap walks, kept for one apply (under _LOCK; "scope" marks that one is under
# way): each walk is one C call that stops every other thread for milliseconds (6 ms at
# 50 k objects), so none is repeated. Outside an apply (import-time patching) nothing is
# kept.
_walks: Dict[str, Any] = {}


def _apply_locked(patch: Patch, wait_quiescent: Optional[float], restricted: bool) -> Result:
    if patch.id in _applied:
        return _apply(patch, wait_quiescent)
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
                  dict(_added_index(), **_added_entries(patch)))
    try:
        return _apply(patch, wait_quiescent, owner, note)
    finally:
        if patch.id not in _applied:
            _forget_modules([n for n in added if n not in loaded])
            _hook.refresh(_pending_index(), _added_index())


def _apply(patch: Patch, wait_quiescent: Optional[float],
           owner: Optional[_members.Owner] = None, note: str = "") -> Result:
    with _lock():
        if patch.id in _applied:
            rec = _applied[patch.id]
            return Result(patch.id, "already applied", modules=dict(rec.modules))
        # One look at which modules are loaded, used by every step below: a module
        # imported while we work must not be "not loaded" to one step and "loaded" to the
        # next (a compact module then had no plan: SUT-E999 KeyError, issue 13).
        loaded = _loaded(patch)
        patch = _with_sources(patch, loaded)
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
        if wait_quiescent is not None:
            _wait_quiescent(rec, wait_quiescent)
        ctx = HookContext(patch)
        _run_hook(rec, "pre_apply", ctx, refuse=True)
        _migrate(rec)
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
            late_ops = _late(rec, live)
            if late_ops:
                rec.pause_ns = max(rec.pause_ns, _commit_ops(late_ops, live))
                rec.ops = ops + late_ops
        except BaseException as exc:
            _commit.restore(ops)
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
        try:
            _run_hook(rec, "post_apply", ctx, refuse=False)
        except BaseException as exc:
            _commit.undo(rec.ops)
            _commit.reapply(before)
            _unmigrate(rec)
            raise RolledBack(f"post_apply hook of patch {patch.short_id} failed; the patch was "
                             f"rolled back: {type(exc).__name__}: {exc}",
                             details={"patch": patch.id}) from exc
        for t in live:
            rec.notes.extend(t.notes)
            rec.notes.extend(_leftovers(t))
        rec.notes.extend(_settle(deletions, rec.old_codes, undo=False))
        rec.caveats = [f"{m.name}:{c.qualname}: {c.reason}" for m in patch.modules
                       for c in m.changes if c.verdict == "caveat"]
        for r in replaced:
            del _applied[r.patch.id]
            rec.notes.append(f"replaced patch {r.patch.short_id} (same target and baseline)")
        rec.rewind = {}
        _applied[patch.id] = rec
        _hook.refresh(_pending_index(), _added_index())
        _imported_meanwhile(rec)
        return Result(patch.id, "applied" if live or "applied" in rec.modules.values()
                      else "pending import",
                      modules=dict(rec.modules), pause_ns=rec.pause_ns, ops=len(rec.ops),
                      caveats=rec.caveats, notes=rec.notes)


def _loaded(patch: Patch) -> Dict[str, types.ModuleType]:
    """The modules of ``patch`` in sys.modules now: the apply's one look at them."""
    out: Dict[str, types.ModuleType] = {}
    for mp in patch.modules:
        module = sys.modules.get(mp.name)
        if module is not None:
            out[mp.name] = module
    return out


def _imported_meanwhile(rec: _Record) -> None:
    """Patch the modules of ``rec`` still "pending import" that were imported, and have
    finished executing, while it was applied: by this thread (a hook, a fixed module's top
    level), or by a thread whose import began before the hook served them. One still
    executing in another thread came through the hook and is patched when it finishes.
    A refusal here is the module's state, as with the hook (``patch_on_import``)."""
    for name, state in list(rec.modules.items()):
        module = sys.modules.get(name)
        if state != "pending import" or module is None:
            continue
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "_initializing", False):
            continue
        patch_on_import(name, module)


def revert(patch_id: str) -> Result:
    with _lock():
        rec = _find(patch_id)
        touched = set(rec.modules)
        newer = [r for r in list(_applied.values())[list(_applied).index(rec.patch.id) + 1:]
                 if touched & {m for m, s in r.modules.items() if s == "applied"}]
        if newer:
            raise RevertOrderError(
                f"Patch {rec.patch.short_id} cannot be reverted while newer patch "
                f"{newer[-1].patch.short_id} patches the same modules; revert that first "
                f"(`suture revert {newer[-1].patch.short_id}`). Nothing was changed.",
                details={"patch": rec.patch.id, "newer": [r.patch.id for r in newer]})
        ctx = HookContext(rec.patch)
        _run_hook(rec, "pre_revert", ctx, refuse=True)
        removals = _added_module_removals(rec)
        log = rec.ops + removals
        # Names the patch added are read by patched frames that may still be running:
        # they go only once no frame runs the patched code (see apply).
        additions = [o for o in log if o.kind != "call" and o.old is MISSING
                     and o.new is not MISSING]
        added = {id(o) for o in additions}
        pause = _commit.undo([o for o in log if id(o) not in added]) if log else 0
        del _applied[rec.patch.id]
        _hook.refresh(_pending_index(), _added_index())
        notes = _settle(additions, _installed_codes(rec), undo=True)
        try:
            _run_hook(rec, "post_revert", ctx, refuse=False)
        except Exception as exc:
            notes.append(f"post_revert hook failed after the code was restored: {exc!r}")
        return Result(rec.patch.id, "reverted", modules={m: "reverted" for m in rec.modules},
                      pause_ns=pause, ops=len(rec.ops), notes=notes)


def applied_ids() -> List[str]:
    with _lock():
        return list(_applied)


def status() -> Dict[str, Any]:
    with _lock():
        patches = [{
            "id": r.patch.id, "target": dict(r.patch.target), "describe": r.patch.describe(),
            "cves": list(r.patch.meta.get("cves", [])),
            "modules": {m: "applied" if st == "pending add" and m in sys.modules else st
                        for m, st in r.modules.items()},
            "applied_at": r.applied_at, "pause_ns": r.pause_ns, "ops": len(r.ops),
            "caveats": list(r.caveats), "notes": list(r.notes),
        } for r in _applied.values()]
        old = {k: (v[0], v[1], r.patch.id) for r in _applied.values()
               for k, v in r.old_codes.items()}
    return {"patches": patches, "active": active(old)}


# -- step 1: check the patch against itself -----------------------------------

def _check(patch: Patch) -> Dict[str, _defs.ModulePlan]:
    plans: Dict[str, _defs.ModulePlan] = {}
    restart: List[str] = []
    hooks: List[str] = []
    for mp in patch.modules:
        if mp.compact:   # not loaded: its sources are rebuilt and checked when it is imported
            changes: Sequence[Any] = mp.changes
        else:
            plans[mp.name] = _plan(patch, mp)
            changes = plans[mp.name].changes
        for c in changes:
            if c.verdict == "restart":
                restart.append(f"{mp.name}:{c.qualname} ({c.kind}: {c.reason})")
            elif c.verdict == "hook" and patch.hooks is None:
                hooks.append(f"{mp.name}:{c.qualname} ({c.kind})")
    if not patch.meta.get("partial"):   # a partial patch left those out on purpose
        restart += [f"{f.get('path')} ({f.get('kind')}: {f.get('reason')})"
                    for f in patch.files if f.get("verdict") == "restart"]
    if restart:
        raise RestartRequired(
            f"Patch {patch.short_id} ({patch.describe()}) cannot be applied live: "
            + "; ".join(restart) + ". Nothing was changed; deploy the fixed version with a restart.",
            details={"patch": patch.id, "changes": restart})
    if hooks:
        raise NeedsHook(
            f"Patch {patch.short_id} ({patch.describe()}) needs a hook for: " + "; ".join(hooks)
            + ". Nothing was changed; rebuild with `suture build --hooks FILE`.",
            details={"patch": patch.id, "changes": hooks})
    return plans


def _replaced_by(patch: Patch) -> List[_Record]:
    """Applied patches that ``patch`` supersedes (a cumulative patch: same target, same baseline).

    A patch built from the same baseline of the same target as an applied one
    replaces it in one commit (kernel livepatch's "atomic replace"). A patch
    whose baseline is an applied patch's *fixed* code stacks on it instead.
    """
    mine = {m.name: m.baseline.sha256 for m in patch.modules if m.baseline is not None}
    out = []
    for r in _applied.values():
        theirs = {m.name: m.baseline.sha256 for m in r.patch.modules if m.baseline is not None}
        common = mine.keys() & theirs.keys()
        if (r.patch.target.get("name") == patch.target.get("name")
                and r.patch.target.get("from_version") == patch.target.get("from_version")
                and common and all(mine[n] == theirs[n] for n in common)):
            out.append(r)
    for r in out:
        ids = list(_applied)
        touched = set(r.modules)
        newer = [n for n in ids[ids.index(r.patch.id) + 1:] if _applied[n] not in out
                 and touched & set(_applied[n].modules)]
        if newer:
            raise RevertOrderError(
                f"Patch {patch.short_id} would replace {r.patch.short_id}, but newer patch "
                f"{newer[-1][:12]} patches the same modules; revert it first. Nothing was "
                "changed.", details={"patch": patch.id, "newer": newer})
    return out


def _load_hooks(patch: Patch) -> Optional[types.ModuleType]:
    if patch.hooks is None:
        return None
    name = f"suture_hooks_{patch.short_id}"
    filename = f"<suture hooks {patch.short_id}>"
    _register_source(filename, patch.hooks.whole)
    mod = types.ModuleType(name)
    mod.__file__ = filename
    try:
        exec(compile(patch.hooks.whole, filename, "exec", dont_inherit=True), mod.__dict__)
    except Exception as exc:
        raise _unless_exhausted(exc, f"the hooks of patch {patch.short_id}", HookFailed(
            f"The hooks of patch {patch.short_id} failed to load: "
            f"{type(exc).__name__}: {exc}. Nothing was changed.",
            details={"patch": patch.id})) from exc
    return mod


# -- step 2: prepare one module ------------------------------------------------

def _module_functions(module: types.ModuleType, files: Set[str]) -> List[FunctionType]:
    """Every live function defined by this module: its globals are the module's dict.

    Never ``gc.get_objects()``: it hands out new references to *every* tracked
    object, including a tuple another thread is still building (``tuple(gen)``
    suspended in Python code); when that thread resumes, ``_PyTuple_Resize``
    sees a second reference and raises SystemError in the application. The
    referrers of one specific object are only objects that already point at it.
    """
    d = module.__dict__
    if _LRU_IS_HEAP_TYPE and _walks.get("scope") and "lru" not in _walks:
        # One walk for both: referrers of two objects cost 5.3 ms where two walks cost
        # 9.1 (48 k objects), and every walk stops the application's threads.
        found = gc.get_referrers(d, _LRU_TYPE)
        _walks["lru"] = _lru_rows(w for w in found if type(w) is _LRU_TYPE)
    else:
        found = gc.get_referrers(d)
    return [f for f in found
            if type(f) is FunctionType and f.__code__.co_filename in files]


def _plan(patch: Patch, mp: ModulePatch) -> _defs.ModulePlan:
    """The module's changes derived from its (whole) sources; they must be the declared ones."""
    try:
        if mp.action == "add":
            plan = _defs.added_module_plan(mp.fixed.text or "")
        else:
            assert mp.baseline is not None
            plan = _defs.diff_module(mp.baseline.text or "", mp.fixed.text or "", mp.name)
    except SyntaxError as exc:
        raise PatchFormatError(f"Patch {patch.short_id}: the source of {mp.name} does not "
                               f"parse on Python {sys.version.split()[0]}: {exc}",
                               details={"module": mp.name}) from exc
    derived = sorted((c.kind, c.qualname, c.verdict) for c in plan.changes)
    declared = sorted((c.kind, c.qualname, c.verdict) for c in mp.changes)
    if derived != declared:
        raise PatchFormatError(
            f"Patch {patch.short_id}: the change list of {mp.name} does not match its "
            "sources (built by another Suture version, or edited). Rebuild the patch.",
            details={"module": mp.name, "derived": derived, "declared": declared})
    return plan


def _with_sources(patch: Patch, loaded: Mapping[str, types.ModuleType]) -> Patch:
    """``patch`` with the sources of its compact modules rebuilt, for those loaded here.

    A compact module carries hashes and the changed lines only; its whole sources come
    from the process: the fixed source of an applied patch (stacking), else the module's
    own file, each accepted only if it hashes to the baseline or to the fixed source.
    """
    if not any(mp.compact for mp in patch.modules):
        return patch
    modules = [_resolved(patch, mp, loaded[mp.name]) if mp.compact
               and mp.name in loaded else mp for mp in patch.modules]
    return dataclasses.replace(patch, modules=tuple(modules))


def _resolved(patch: Patch, mp: ModulePatch, module: types.ModuleType) -> ModulePatch:
    texts = [m.fixed.text for r in _applied.values() for m in r.patch.modules
             if m.name == mp.name and m.fixed.text is not None]
    for text in texts + [_file_text(module)]:
        full = patchfile.resolve(mp, text)
        if full is not None:
            return full
    assert mp.baseline is not None
    raise BaselineMismatch(
        f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} does not match the "
        f"baseline: its source file ({getattr(module, '__file__', None) or 'none'}) is neither "
        f"the baseline (sha256 {mp.baseline.sha256[:12]}\u2026) nor the fixed version, and "
        "this patch carries only the changed lines, so the running code cannot be checked "
        "against the baseline. Nothing was changed. If another version was installed under "
        "the running process, rebuild the patch with `suture build --embed-sources`, which "
        "carries the whole baseline.",
        details={"module": mp.name, "baseline_sha256": mp.baseline.sha256, "first": None})


def _file_text(module: types.ModuleType) -> Optional[str]:
    """The module's source file as bytes on disk decoded like the builder does, or None."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    loader = getattr(module, "__loader__", None)
    try:
        if loader is not None and hasattr(loader, "get_data"):   # also zip imports
            data = loader.get_data(file)
        else:
            with open(file, "rb") as f:
                data = f.read()
    except (OSError, ImportError) as exc:
        _raise_os_failure(exc, file, f"reading the source file of {module.__name__}")
        return None   # absent (deleted, or in no file): the caller refuses with SUT-E201
    return patchfile.decode_source(bytes(data))


def _unless_exhausted(exc: BaseException, doing: str, refusal: SutureError) -> SutureError:
    """``refusal`` for an exception raised by code evaluated before the commit (new
    definitions, defaults, hooks), unless an OSError behind it says the process or host ran
    out of something (EMFILE, ENFILE, ENOSPC, EDQUOT, ENOMEM): that is SUT-E640, since the
    same patch will apply once the resource is back. Other OSErrors (EACCES on a file the
    new code opens...) may well be the patch's doing and stay refusals."""
    cause = os_cause(exc)
    if cause is not None and cause.errno in EXHAUSTED:
        return os_failure(cause, None, doing)
    return refusal


def _raise_os_failure(exc: BaseException, path: Optional[str], doing: str) -> None:
    """The one rule for reads the engine makes in the target: a file that is absent is a
    fact about the module and the caller decides; any other OSError (EMFILE, ENFILE,
    EACCES, EIO...) is raised as ``SystemCallFailed`` (SUT-E640), never turned into "no
    source" (which would read as a baseline mismatch, SUT-E201, and send the operator to
    rebuild a patch that is fine)."""
    cause = os_cause(exc)
    if cause is not None:
        raise os_failure(cause, path, doing) from exc


def _module_files(name: str, module: types.ModuleType) -> Set[str]:
    files = {module.__file__} if getattr(module, "__file__", None) else set()
    for r in _applied.values():
        if name in r.filenames:
            files.add(r.filenames[name])
    return files  # type: ignore[return-value]


def _prepare(rec: _Record, mp: ModulePatch, module: types.ModuleType,
             plan: _defs.ModulePlan) -> _ModuleTxn:
    patch = rec.patch
    txn = _ModuleTxn(mp.name)
    txn.has_hooks = patch.hooks is not None
    file = getattr(module, "__file__", None)
    if not file:
        raise BaselineMismatch(
            f"Refused patch {patch.short_id} ({patch.describe()}): module {mp.name} has no "
            "__file__ (built in, frozen or made at run time), so its code cannot be matched "
            "with the baseline. Nothing was changed.", details={"module": mp.name})
    assert mp.baseline is not None
    # The fixed code's file name is "<...>": linecache.clearcache() (anyone may call it)
    # empties our registered lines, and for any other name linecache then falls back to
    # the module's loader, i.e. the file on disk: tracebacks and inspect.getsource would
    # show the *vulnerable* version's lines at the fixed code's line numbers. For
    # "<...>" names linecache has no fallback: no line is shown rather than a wrong one.
    txn.filename = f"<suture {patch.short_id} {file}>"
    txn.sources = {m.name: m.fixed.text for m in patch.modules if m.fixed.text is not None}
    try:
        # from the trees _check parsed: each source is parsed once per apply
        b_code = compile(plan.old_tree or mp.baseline.whole, file, "exec", dont_inherit=True)
        f_code = compile(plan.new_tree or mp.fixed.whole, txn.filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise PatchFormatError(f"Patch {patch.short_id}: {mp.name} does not compile on Python "
                               f"{sys.version.split()[0]}: {exc}. Nothing was changed.",
                               details={"module": mp.name}) from exc
    memo: Dict[int, Any] = {}
    base, base_stubs = _drop_overloads(_codes.tree(b_code), plan.old_tree)
    fixed, _ = _drop_overloads(_codes.tree(f_code), plan.new_tree)

    def same(a: CodeType, b: CodeType) -> bool:
        return _codes.structure(a, memo) == _codes.structure(b, memo)

    changed_q = {q for q in base if q in fixed and (
        len(base[q]) != len(fixed[q]) or not all(map(same, base[q], fixed[q])))}
    files = _module_files(mp.name, module)
    funcs = _module_functions(module, files)
    quals = _codes.live_qualnames(funcs)
    on_base: Set[str] = set()
    on_fixed: Set[str] = set()
    mismatched: List[str] = []
    blocked: List[str] = []
    swaps: List[Tuple[FunctionType, CodeType, str]] = []
    forwards: List[Tuple[FunctionType, CodeType, str, type]] = []
    for f in funcs:
        live = rec.rewind.get((id(f), "__code__"), f.__code__)
        if live is f.__code__ and f.__code__.co_filename in rec.rewound_files:
            continue  # created by a patch being replaced; its undo unbinds it
        q = quals.get(id(f.__code__))
        if q is None:
            continue
        if any(same(c, live) for c in base_stubs.get(q, ())):
            continue  # an @overload stub kept by typing's registry: never called
        cands = base.get(q, [])
        idx = next((i for i, c in enumerate(cands) if same(c, live)), None)
        if idx is None:
            if any(same(c, live) for c in fixed.get(q, [])):
                on_fixed.add(q)
            else:
                mismatched.append(q)
            continue
        if q in changed_q:
            on_base.add(q)
        targets = fixed.get(q)
        if not targets:
            continue  # removed in the fixed version; its binding is dropped below
        if len(targets) != len(cands):
            mismatched.append(f"{q} (several definitions share this name and their number "
                              "changed)")
            continue
        new = targets[idx]
        if new.co_freevars != live.co_freevars:
            owner = _method_owner(module, q, live, new)
            if owner is not None:
                forwards.append((f, new, q, owner))
                continue
            blocked.append(f"{q}: a closure created before the patch captures "
                           f"({', '.join(live.co_freevars) or 'nothing'}) but the fixed code "
                           f"needs ({', '.join(new.co_freevars) or 'nothing'})")
            continue
        swaps.append((f, new, q))
    if mismatched or (on_base and on_fixed):
        first = mismatched[0] if mismatched else sorted(on_fixed)[0]
        raise BaselineMismatch(
            f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} does not match "
            f"the baseline: `{mp.name}:{first}` differs from the code the patch was built "
            f"against (sha256 {mp.baseline.sha256[:12]}\u2026). Nothing was changed. Check which "
            "version the process runs, then rebuild the patch from that version.",
            details={"module": mp.name, "first": first, "mismatched": mismatched,
                     "baseline_sha256": mp.baseline.sha256})
    if on_fixed and not on_base:
        txn.state = "already fixed"
        return txn
    missing = sorted(q for q in changed_q if "<locals>" not in q and q not in on_base
                     and q not in on_fixed and _codes.is_named_function(base[q][0]))
    # Defined in a branch that did not run here (requests' ``if sys.platform == "win32":``):
    # the name is unbound, or bound by another branch to something that is not a function
    # or class (setuptools' ``trove_classifier = _TroveClassifier()`` when the import
    # failed); no function object exists, and the fixed module, whose branch conditions
    # the builder checked are the same, would not define it either.
    ns = _own_dict(module) or {}
    skipped = [q for q in missing if q.split(".")[0] in _branch_defs(plan.old_tree)
               and not _isa(ns.get(q.split(".")[0]), (FunctionType, type))]
    missing = [q for q in missing if q not in skipped]
    if skipped:
        txn.notes.append(f"not defined in this process (its branch did not run): "
                         f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    if missing:
        raise BaselineMismatch(
            f"Refused patch {patch.short_id} ({patch.describe()}): `{mp.name}:{missing[0]}` is "
            "changed by the patch but no live function of the process runs its code (replaced "
            "at run time, or a compiled variant is in use). Nothing was changed.",
            details={"module": mp.name, "missing": missing})
    if blocked:
        raise RestartRequired(
            f"Patch {patch.short_id} ({patch.describe()}) cannot be applied live to "
            f"{mp.name}: " + "; ".join(blocked) + ". Nothing was changed.",
            details={"module": mp.name, "blocked": blocked})

    warn_kind = False
    swapped: Set[int] = set()
    for f, new, q in swaps:
        txn.ops.append(Op("attr", f, "__code__", new, f"{mp.name}:{q}"))
        swapped.add(id(f))
        warn_kind |= _codes.kind(new) != _codes.kind(f.__code__)
        if q in changed_q:
            txn.old_codes[id(f.__code__)] = (f.__code__, f"{mp.name}:{q}")
            txn.changed_funcs.add(id(f))
    for f, new, q, owner in forwards:
        target = _forwarding(txn, f, new, q, owner)
        swapped.add(id(f))
        txn.old_codes[id(f.__code__)] = (f.__code__, f"{mp.name}:{q}")
        txn.changed_funcs.add(id(f))
        txn.forwarded[id(f)] = target
        warn_kind |= _codes.kind(f.__code__) != 0   # the forwarder is a plain function
        swaps.append((f, f.__code__, q))  # found again by _defaults and cache clearing below
    # Only functions whose code really changes can leave stale answers in their caches
    # (caches of callers elsewhere: _stale_caches). get_referrers costs one heap walk
    # *times the number of arguments*, so the list is kept short (docs/performance.md).
    changed = [f for f, _, _ in swaps if id(f) in txn.changed_funcs]
    if changed:
        # 3.10+: the wrapper type is a heap type, so one walk finds every wrapper;
        # 3.9's is static (instances do not point at it): ask for the changed functions.
        found = ([w for _, w in _lru_wrappers()] if _LRU_IS_HEAP_TYPE
                 else gc.get_referrers(*changed))
        changed_ids = {id(f) for f in changed}
        wrappers = [w for w in found if type(w) is _LRU_TYPE
                    and id(getattr(w, "__wrapped__", None)) in changed_ids]
        txn.ops.extend(Call(w.cache_clear, f"cache_clear {mp.name}") for w in wrappers)
        txn.cleared.update(id(w) for w in wrappers)
    _register_source(txn.filename, mp.fixed.whole)

    txn.plan = plan
    txn.fixed_tree = plan.new_tree or ast.parse(mp.fixed.whole)
    _check_run_time_state(txn, module, plan)
    txn.swapped = [f for f, _, _ in swaps]
    early, txn.late_stmts = _late_split(
        plan, (_own_dict(module) or {}).get("__package__") or "",
        {m.name for m in patch.modules if m.name != mp.name})
    mod_ns = _exec_stmts(txn, module, early)
    for cp in plan.classes:
        _prepare_class(txn, module, cp, plan, mod_ns)
    _bind_module(txn, module, plan, mod_ns, late=False)
    _defaults(txn, module, plan.recompute_defaults, mod_ns, quals)
    if warn_kind and sys.version_info >= (3, 13):
        txn.notes.append("a function changes between plain and generator/coroutine code")
    return txn


_LITERAL_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set,
                  frozenset)


def _same_literal(live: Any, value: Any) -> bool:
    """``live == value`` for a literal ``value``, without running application code."""
    if type(live) is not type(value):
        return False
    if isinstance(value, (list, tuple)):
        return len(live) == len(value) and all(map(_same_literal, live, value))
    if isinstance(value, dict):
        return (len(live) == len(value) and all(type(k) in _LITERAL_TYPES for k in live)
                and all(k in value and _same_literal(live[k], value[k]) for k in live))
    if isinstance(value, (set, frozenset)):
        return all(type(k) in _LITERAL_TYPES for k in live) and live == value
    return bool(live == value)


def _check_run_time_state(txn: _ModuleTxn, module: types.ModuleType,
                          plan: _defs.ModulePlan) -> None:
    """Refuse to rebind a name whose live value is no longer what its old statement made.

    ``_finders = None`` at import, then filled by code (setuptools 69's ``_declare_state``,
    a registry assigned by ``configure()``): the statement changed, but rebinding the name
    to the new statement's value would throw away state the process built since. Only old
    values that are literals can be compared without running application code.
    """
    if plan.old_tree is None or plan.new_tree is None:
        return
    old_k = _defs._keyed(plan.old_tree.body)
    run = {id(s) for s in plan.exec_stmts}
    live_ns = _own_dict(module) or {}
    for key, stmt in _defs._keyed(plan.new_tree.body).items():
        before = old_k.get(key)
        if id(stmt) not in run or not isinstance(before, ast.Assign) \
                or _defs.stmt_category(stmt) != "assign" or len(before.targets) != 1 \
                or not isinstance(before.targets[0], ast.Name):
            continue
        name = before.targets[0].id
        if sum(name in _defs.touched_names(st) for st in plan.old_tree.body) != 1:
            continue   # built by several statements: its value is not this literal alone
        try:
            value = ast.literal_eval(before.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if name in live_ns and not txn.has_hooks and not _same_literal(live_ns[name], value):
            raise NeedsHook(
                f"Refused: {txn.name}.{name} was set to {_defs._text(before).split('=', 1)[1].strip()}"
                f" at import, but now holds a {type(live_ns[name]).__name__} the process built "
                f"since; the patch changes its statement, and rebinding it would throw that "
                "state away. Nothing was changed; rebuild with a hook that carries the state "
                "over (suture build --hooks).", details={"module": txn.name, "name": name})


def _drop_overloads(codes: Dict[str, List[CodeType]], tree: Optional[ast.Module]
                    ) -> Tuple[Dict[str, List[CodeType]], Dict[str, List[CodeType]]]:
    """Split the code of ``@overload`` stubs off ``codes`` (qualname -> code, in order)."""
    flags: Dict[str, List[bool]] = {}
    for q, fn in _defs.iter_functions(tree.body if tree is not None else [], overloads=True):
        flags.setdefault(q, []).append(_defs.is_overload(fn))
    stubs: Dict[str, List[CodeType]] = {}
    for q, marks in flags.items():
        if any(marks) and len(codes.get(q, ())) == len(marks):
            stubs[q] = [c for c, m in zip(codes[q], marks) if m]
            codes[q] = [c for c, m in zip(codes[q], marks) if not m]
    return codes, stubs


def _branch_defs(tree: Optional[ast.Module]) -> Set[str]:
    """Names of functions and classes defined inside module-level if/try blocks."""
    out: Set[str] = set()
    for stmt in tree.body if tree is not None else ():
        if isinstance(stmt, (ast.If, ast.Try)):
            out.update(n.name for n in ast.walk(stmt)
                       if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    return out


def _method_owner(module: types.ModuleType, q: str, live: CodeType,
                  new: CodeType) -> Optional[type]:
    """The class of a method whose free variables differ only by ``__class__`` (super())."""
    if set(live.co_freevars) ^ set(new.co_freevars) != {"__class__"} or "<locals>" in q \
            or "." not in q:
        return None
    return _resolve_class(module, q.rsplit(".", 1)[0])


def _forwarding(txn: _ModuleTxn, f: FunctionType, new: CodeType, q: str,
                owner: type) -> FunctionType:
    """A method starts or stops using super(): its closure must gain or lose ``__class__``.

    A function's closure cannot change, so a new function object is built with
    the right cells (``__class__`` is the live class) and the old object, which
    aliases, bound methods and the class itself may hold, is turned into a
    forwarder: its code calls the new function, found in its kw-only defaults
    (so the forwarder needs no closure or global of its own). Every reference
    sees the fix; the old object's signature reads ``(*args, **kwargs)``.
    """
    cells = dict(zip(f.__code__.co_freevars, f.__closure__ or ()))
    closure = tuple(cells[n] if n in cells else types.CellType(owner) for n in new.co_freevars)
    target = FunctionType(new, f.__globals__, f.__name__, f.__defaults__, closure or None)
    target.__kwdefaults__ = dict(f.__kwdefaults__) if f.__kwdefaults__ else None
    target.__qualname__ = f.__qualname__
    target.__doc__ = f.__doc__
    target.__module__ = f.__module__
    target.__annotations__ = dict(getattr(f, "__annotations__", {}) or {})
    target.__dict__.update(f.__dict__)
    txn.ops.append(Op("attr", f, "__code__", _forwarder_code(f, txn.filename, q),
                      f"{txn.name}:{q} (forwards)"))
    txn.ops.append(Op("attr", f, "__kwdefaults__", {"__suture_forward__": target},
                      f"{txn.name}:{q} forward target"))
    txn.ops.append(Op("attr", f, "__defaults__", None, f"{txn.name}:{q} defaults"))
    return target


def _forwarder_code(f: FunctionType, filename: str, q: str) -> CodeType:
    names = f.__code__.co_freevars   # only the count is checked, but keep the names
    lines = ["def _outer():"]
    if names:
        lines.append("    " + " = ".join(names) + " = None")
    lines.append(f"    def {f.__name__}(*args, __suture_forward__=None, **kwargs):")
    if names:  # mention every free variable so the code needs exactly these cells
        lines.append("        if __suture_forward__ is None:")
        lines.append(f"            return ({', '.join(names)},)")
    lines.append("        return __suture_forward__(*args, **kwargs)")
    code = compile("\n".join(lines) + "\n", f"<suture forwarder {q} in {filename}>", "exec",
                   dont_inherit=True)
    outer = next(c for c in code.co_consts if isinstance(c, CodeType))
    return next(c for c in outer.co_consts if isinstance(c, CodeType))


def _stale_caches(txns: List[_ModuleTxn]) -> List[Any]:
    """Clear caches elsewhere that may hold answers of the code being replaced.

    ``acl.allowed`` (``@lru_cache``, in a module the patch does not touch) calls
    ``rules.limit_for``, which it changes: its cached answers are the old
    code's. Every ``lru_cache``/``cache`` bound in a module or class namespace
    is checked (on 3.10+, every wrapper in the heap: ``_lru_wrappers``): if its
    function reads (through its globals, up to 4 calls deep) a function whose
    code changes, a class the patch alters, or a global the patch rebinds, it is
    cleared in the commit. On 3.9, caches reached only through other paths
    (instances, closures) are not found; docs/engine.md says so.
    """
    tainted: Set[int] = set()
    rebound: Set[Tuple[int, Any]] = set()
    cleared: Set[int] = set()
    for t in txns:
        tainted |= t.changed_funcs
        cleared |= t.cleared
        for o in t.first_ops + t.ops:
            if o.kind == "item":
                rebound.add((id(o.obj), o.key))
            elif o.kind == "attr" and _isa(o.obj, type):
                tainted.add(id(o.obj))
    if not tainted and not rebound:
        return []
    memo: Dict[int, bool] = {}

    def reaches(fn: Any, depth: int) -> bool:
        while type(fn) is not FunctionType:
            fn = (_own_dict(fn) or {}).get("__wrapped__")
            if fn is None:
                return False
        if id(fn) in memo:
            return memo[id(fn)]
        memo[id(fn)] = False  # cycles end here
        g = fn.__globals__
        names = set(fn.__code__.co_names)
        for _, c in _codes.walk(fn.__code__, ""):
            names.update(c.co_names)
        hit = id(fn) in tainted
        for n in names:
            if hit:
                break
            if (id(g), n) in rebound:
                hit = True
                break
            obj = g.get(n)
            if obj is None:
                continue
            if id(obj) in tainted or (depth > 0 and reaches(obj, depth - 1)):
                hit = True
        memo[id(fn)] = hit
        return hit

    out: List[Any] = []
    for where, w in _lru_wrappers():
        if id(w) not in cleared and reaches(w, 4):
            cleared.add(id(w))
            out.append(Call(w.cache_clear, f"cache_clear {where}"))
    return out


def _lru_rows(wrappers: Any) -> List[Tuple[str, Any]]:
    rows = []
    for w in wrappers:
        names = _own_dict(w) or {}
        rows.append((f"{names.get('__module__')}:{names.get('__qualname__')}", w))
    return rows


def _lru_wrappers() -> List[Tuple[str, Any]]:
    """Every ``lru_cache`` wrapper that may hold stale answers, with where it lives.

    3.10+: the wrapper type is a heap type, so one ``gc.get_referrers`` walk (in C) finds
    every wrapper, wherever it is bound (module, class, instance, closure). 3.9's type is
    static: wrappers bound in module and class namespaces are found by scanning
    ``sys.modules``, a Python loop that costs tens of ms in a Flask worker (the first
    version did this everywhere: a 20-35 ms latency spike under load, docs/performance.md).
    """
    if _LRU_IS_HEAP_TYPE:
        found = _walks.get("lru")   # one walk per apply: prepare and _stale_caches share it
        if found is None:
            found = _lru_rows(w for w in gc.get_referrers(_LRU_TYPE) if type(w) is _LRU_TYPE)
            if _walks.get("scope"):
                _walks["lru"] = found
        return list(found)
    out: List[Tuple[str, Any]] = []
    for modname, mod in list(sys.modules.items()):
        d = _own_dict(mod)
        if d is None:
            continue
        for v in list(d.values()):
            if type(v) is _LRU_TYPE:
                out.append((modname, v))
            elif _isa(v, type) and vars(v).get("__module__") == modname:
                out.extend((modname, a) for a in list(vars(v).values()) if type(a) is _LRU_TYPE)
    return out


def _late_split(plan: _defs.ModulePlan, package: str = "", patched: AbstractSet[str] = frozenset()
                ) -> Tuple[List[ast.stmt], List[ast.stmt]]:
    """Statements that call changed code must run after the code swap (second commit).

    So must the part of ``from M import ...`` that imports names ``M`` (another module of
    the same patch) does not have yet: the first commit binds them (gunicorn 22:
    ``http.message`` imports the new ``UnsupportedTransferCoding`` from ``http.errors``).
    Names ``M`` already has are imported early, as other new statements may need them
    (Pygments 2.15.1: a new base class imported in the same statement).
    """
    construct = _construct_names(plan)
    # Functions and classes this batch defines have the live module as globals, where the
    # batch's other new names do not exist before the commit (requests 2.32:
    # ``chardet = _resolve_char_detection()`` and its new ``import importlib``).
    batch = {n for s in plan.exec_stmts for n in _defs.bound_names(s)}
    construct |= {s.name for s in plan.exec_stmts   # type: ignore[attr-defined]
                  if _defs.stmt_category(s) in ("def", "class")
                  and _defs._names_in(s.body) & batch}  # type: ignore[attr-defined]
    early: List[ast.stmt] = []
    late: List[ast.stmt] = []
    late_names: Set[str] = set()
    for s in plan.exec_stmts:
        cat = _defs.stmt_category(s)
        if isinstance(s, ast.ImportFrom) and _new_names(s, package, patched):
            new = _new_names(s, package, patched)
            for part, names in ((early, [a for a in s.names if a.name not in new]),
                                (late, [a for a in s.names if a.name in new])):
                if names:
                    part.append(ast.copy_location(ast.ImportFrom(
                        module=s.module, names=names, level=s.level), s))
            late_names.update(a.asname or a.name for a in s.names if a.name in new)
        elif (cat in ("assign", "binding-block", "mutation")
              and _defs._called_roots(s) & construct
              or cat in ("assign", "binding-block", "mutation", "class")
              and _defs._names_in([s]) & late_names):
            late.append(s)   # a statement that builds on a late name runs after it
            late_names.update(_defs.bound_names(s))
        else:
            early.append(s)
    return early, late


def _import_source(stmt: ast.ImportFrom, package: str) -> str:
    """The absolute module name ``stmt`` imports from ('' if it cannot be resolved)."""
    if not stmt.level:
        return stmt.module or ""
    parts = package.split(".") if package else []
    if stmt.level - 1 > len(parts) or not parts:
        return ""
    base = parts[:len(parts) - (stmt.level - 1)]
    return ".".join(base + ([stmt.module] if stmt.module else []))


def _new_names(stmt: ast.ImportFrom, package: str, patched: AbstractSet[str]) -> Set[str]:
    """Names ``stmt`` imports from another module of the patch that it does not have yet."""
    source = _import_source(stmt, package)
    if source not in patched:
        return set()
    live = _own_dict(sys.modules.get(source)) or {}
    return {a.name for a in stmt.names if a.name != "*" and a.name not in live
            and f"{source}.{a.name}" not in sys.modules}


def _construct_names(plan: _defs.ModulePlan) -> Set[str]:
    out: Set[str] = set()
    for c in plan.changes:
        if not c.kind.startswith(("changed function", "changed method", "changed default",
                                  "re-evaluated default", "regenerated",
                                  "changed class bases", "changed decorator")):
            continue
        head, _, tail = c.qualname.partition(".")
        if not tail or tail in ("__init__", "__new__", "__post_init__", "__call__") \
                or c.kind == "changed class bases":
            out.add(head)
    return out


def _compile_stmts(stmts: List[ast.stmt], plan: _defs.ModulePlan, filename: str) -> CodeType:
    tree = ast.Module(body=list(plan.future_flags) + stmts, type_ignores=[])
    return compile(tree, filename, "exec", dont_inherit=True)


def _exec_stmts(txn: _ModuleTxn, module: types.ModuleType,
               stmts: List[ast.stmt]) -> Dict[str, Any]:
    """Evaluate new and changed module-level statements into a scratch namespace.

    ``exec(code, module.__dict__, ns)`` gives class-body semantics: names are
    read from ``ns`` then the module then builtins, writes go to ``ns`` only,
    and functions defined here get the live module dict as their globals.
    Scopes nested in these statements (class bodies, comprehensions) read the
    module, not ``ns``: ``_ScratchReads`` points their reads of names bound
    earlier in the batch at ``ns`` (gunicorn 22's new ``HeaderMap`` setting class
    reads the new ``validate_header_map_behaviour`` function).
    """
    ns: Dict[str, Any] = {}
    if not stmts:
        return ns
    assert txn.plan is not None
    stmts, registrations = _split_registrations(stmts, module)
    channel = f"__suture_scratch_{id(ns):x}__"
    stmts = _ScratchReads.rewrite(stmts, channel)
    setter = f"__suture_set_{id(ns):x}__"
    stmts = [_deferred_set(s, setter) for s in stmts]
    code = _compile_stmts(stmts, txn.plan, txn.filename)

    def set_at_commit(root: str, obj: Any, key: str, value: Any, item: bool) -> None:
        if root in ns:          # an object this batch made: nothing else sees it yet
            obj.__setitem__(key, value) if item else setattr(obj, key, value)
        elif item and type(obj) is not dict:
            raise TypeError(f"{root}[...] is not a plain dict; setting an item in it "
                            "cannot be undone")
        else:
            txn.ops.append(Op("item" if item else "attr", obj, key, value,
                              f"{txn.name}: {root}{f'[{key!r}]' if item else f'.{key}'}"))
    setattr(builtins, channel, ns)
    setattr(builtins, setter, set_at_commit)
    try:
        exec(code, module.__dict__, ns)
        for name, dispatcher, type_expr in registrations:
            func = ns[name]
            if type_expr is not None:
                expr = ast.Expression(body=type_expr)
                ast.fix_missing_locations(expr)
                cls = eval(compile(expr, txn.filename, "eval", dont_inherit=True),
                           module.__dict__, ns)
            else:
                first = func.__code__.co_varnames[0]
                cls = func.__annotations__[first]
                if isinstance(cls, str):
                    cls = eval(cls, module.__dict__, ns)
            txn.ops.extend(_register_op(dispatcher, cls, func, f"{txn.name}.{name}"))
    except Exception as exc:
        raise _unless_exhausted(exc, f"evaluating the new definitions of {txn.name}", RefusedError(
            f"Evaluating the new definitions of {txn.name} failed: "
            f"{type(exc).__name__}: {exc}. Nothing was changed.",
            details={"module": txn.name})) from exc
    finally:
        delattr(builtins, channel)
        delattr(builtins, setter)
    return ns


def _deferred_set(stmt: ast.stmt, setter: str) -> ast.stmt:
    """``X.a = v`` / ``X[k] = v`` at module level -> ``setter('X', X, 'a', v, False)``.

    Preparing must not change live objects (the patch may still be refused): the setter
    makes the assignment an op of the commit, undone by revert, unless ``X`` is an
    object this batch created.
    """
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and _defs.stmt_category(stmt) == "mutation"):
        return stmt
    t = stmt.targets[0]
    if isinstance(t, ast.Attribute):
        key: ast.expr = ast.Constant(t.attr)
    elif isinstance(t, ast.Subscript) and not isinstance(t.slice, ast.Slice):
        key = t.slice
        if sys.version_info < (3, 9) and isinstance(key, ast.Index):  # pragma: no cover
            key = key.value  # type: ignore[attr-defined]
    else:
        return stmt
    obj = copy.deepcopy(t.value)
    for node in ast.walk(obj):
        if isinstance(getattr(node, "ctx", None), ast.Store):
            node.ctx = ast.Load()  # type: ignore[attr-defined]
    call = ast.Call(func=ast.Name(setter, ast.Load()),
                    args=[ast.Constant(_defs._root(t)), obj, key, stmt.value,
                          ast.Constant(isinstance(t, ast.Subscript))], keywords=[])
    return ast.fix_missing_locations(ast.copy_location(ast.Expr(call), stmt))


class _ScratchReads(ast.NodeTransformer):
    """Rewrite reads of ``names`` in scopes evaluated during the batch to ``channel[name]``.

    ``channel`` is a builtin that exists only while the batch runs (a unique name no
    application code uses), bound to the scratch namespace. Class bodies and eager
    comprehensions run during the batch, so they are rewritten; function and lambda
    bodies run later, after the commit has bound the names in the module, so they are
    not (their decorators, defaults and annotations are, being evaluated now).
    """

    def __init__(self, names: Set[str], channel: str) -> None:
        self.names = names
        self.channel = channel

    @classmethod
    def rewrite(cls, stmts: List[ast.stmt], channel: str) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        bound: Set[str] = set()
        for stmt in stmts:
            if bound and any(isinstance(n, (ast.ClassDef, ast.ListComp, ast.SetComp,
                                            ast.DictComp)) for n in ast.walk(stmt)):
                stmt = ast.fix_missing_locations(
                    cls(set(bound), channel).visit(copy.deepcopy(stmt)))
            out.append(stmt)
            bound.update(_defs.bound_names(stmt))
        return out

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.names:
            return ast.copy_location(ast.Subscript(
                value=ast.Name(id=self.channel, ctx=ast.Load()),
                slice=ast.Constant(value=node.id), ctx=ast.Load()), node)
        return node

    def visit_FunctionDef(self, node: Any) -> Any:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        if node.returns is not None:
            node.returns = self.visit(node.returns)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        node.args = self.visit(node.args)
        return node

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        return node  # may run after the batch (its first iterable reads ns anyway)

    def _inner(self, bound: Set[str]) -> "_ScratchReads":
        return type(self)(self.names - bound, self.channel)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        # A name the class body binds itself is read from the class namespace first.
        inner = self._inner({n for st in node.body for n in _defs.bound_names(st)})
        node.body = [inner.visit(st) for st in node.body]
        return node

    def _comprehension(self, node: Any) -> Any:
        targets = {n.id for g in node.generators for n in ast.walk(g.target)
                   if isinstance(n, ast.Name)}
        return self._inner(targets).generic_visit(node)

    visit_ListComp = visit_SetComp = visit_DictComp = _comprehension


def _split_registrations(stmts: List[ast.stmt], module: types.ModuleType
                         ) -> Tuple[List[ast.stmt], List[Tuple[str, Any, Optional[ast.expr]]]]:
    """Take ``@dispatcher.register`` off new functions so that registering is an op.

    Running the decorator while preparing would register the implementation
    before the commit (and for good, even if the patch is then refused).
    Instead the registry entry becomes an undoable op, committed atomically.
    Only the outermost decorator is taken off: ``register`` returns the
    function it got, so nothing else changes.
    """
    out: List[ast.stmt] = []
    regs: List[Tuple[str, Any, Optional[ast.expr]]] = []
    for s in stmts:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.decorator_list:
            d = s.decorator_list[0]
            call = d if isinstance(d, ast.Call) else None
            target = call.func if call is not None else d
            if (isinstance(target, ast.Attribute) and target.attr == "register"
                    and isinstance(target.value, ast.Name)):
                dispatcher = module.__dict__.get(target.value.id)
                if _is_singledispatch(dispatcher) and (call is None or len(call.args) == 1):
                    node = copy.copy(s)
                    node.decorator_list = s.decorator_list[1:]
                    out.append(node)
                    regs.append((s.name, dispatcher, call.args[0] if call else None))
                    continue
        out.append(s)
    return out, regs


def _is_singledispatch(obj: Any) -> bool:
    """functools.singledispatch's wrapper: a function carrying registry and dispatch."""
    d = _own_dict(obj) if type(obj) is FunctionType else None
    return d is not None and "registry" in d and type(d.get("dispatch")) is FunctionType \
        and d["dispatch"].__closure__ is not None


def _register_op(dispatcher: Any, cls: Any, func: Any, label: str) -> List[Any]:
    registry = next(r for r in gc.get_referents(dispatcher.registry) if isinstance(r, dict))
    caches = [c.cell_contents for c in dispatcher.dispatch.__closure__
              if isinstance(c.cell_contents, weakref.WeakKeyDictionary)]
    return [Op("item", registry, cls, func, f"register {label}")] + [
        Call(c.clear, f"clear dispatch cache for {label}") for c in caches]


def _bind_module(txn: _ModuleTxn, module: types.ModuleType, plan: _defs.ModulePlan,
                 ns: Dict[str, Any], late: bool) -> None:
    d = module.__dict__
    rebound: Dict[str, Any] = {}
    for name in plan.bind:
        if name in ns:
            old = d.get(name, MISSING)
            txn.ops.append(Op("item", d, name, ns[name], f"{txn.name}.{name}"))
            if old is not MISSING and old is not ns[name]:
                rebound[name] = old
                txn.watch.append((f"{txn.name}.{name}", old))
    if not late:
        for name in plan.delete:
            if name in d:
                txn.ops.append(Op("item", d, name, MISSING, f"del {txn.name}.{name}"))
                rebound[name] = d[name]
    copies = [(d_, alias, name) for d_, alias, name in _importers(txn.name, rebound) if name in ns]
    for alias_dict, alias, name in copies:
        txn.ops.append(Op("item", alias_dict, alias, ns[name], f"copy of {txn.name}.{name}"))
    if not late:
        _propagate(txn, [(d_, alias, ns[name]) for d_, alias, name in copies])


def _importers(modname: str, old: Dict[str, Any]) -> List[Tuple[Dict[str, Any], str, str]]:
    """Module dicts holding ``old`` values through ``from modname import name [as alias]``.

    Identity alone is not proof (small ints and interned strings are shared,
    ``re.compile`` caches patterns), so each candidate module's own source must
    contain the matching import; re-exports through a package follow in turn.
    """
    if not old:
        return []
    targets = {(modname, n): n for n in old}
    by_id = {id(v): n for n, v in old.items()}
    out: List[Tuple[Dict[str, Any], str, str]] = []
    seen: Set[Tuple[str, str]] = set()
    grew = True
    while grew:
        grew = False
        for other_name, other in list(sys.modules.items()):
            d = _own_dict(other)
            if other_name == modname or d is None:
                continue
            hits = [(k, by_id[id(v)]) for k, v in list(d.items()) if id(v) in by_id]
            if not hits:
                continue
            imports = _from_imports(other)
            for alias, orig in hits:
                if (other_name, alias) in seen:
                    continue
                for src_mod, src_name in imports.get(alias, ()):
                    if targets.get((src_mod, src_name)) == orig:
                        seen.add((other_name, alias))
                        targets[(other_name, alias)] = orig
                        out.append((d, alias, orig))
                        grew = True
                        break
    return out


def _from_imports(module: types.ModuleType) -> Dict[str, List[Tuple[str, str]]]:
    """alias -> [(absolute module, name)] for every ``from ... import`` in its source."""
    tree = _source_tree(module)
    if tree is None:
        return {}
    package = getattr(module, "__package__", None) or ""
    out: Dict[str, List[Tuple[str, str]]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".") if package else []
            if node.level > 1:
                parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(p for p in parts + ([node.module] if node.module else []) if p)
        for a in node.names:
            out.setdefault(a.asname or a.name, []).append((base, a.name))
    return out


def _resolve_class(module: types.ModuleType, qualname: str) -> Optional[type]:
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None) if obj is module else obj.__dict__.get(part)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _prepare_class(txn: _ModuleTxn, module: types.ModuleType, cp: _defs.ClassPlan,
                   plan: _defs.ModulePlan, mod_ns: Dict[str, Any]) -> None:
    cls = _resolve_class(module, cp.qualname)
    if cls is None:
        raise BaselineMismatch(
            f"Refused: class {txn.name}:{cp.qualname} is not in the running module (or is not "
            "a class), so its changes cannot be applied. Nothing was changed.",
            details={"module": txn.name, "class": cp.qualname})
    if cp.regenerate:
        _regenerate_dataclass(txn, module, cls, cp, plan)
    if cp.exec_members:
        path = cp.qualname.split(".")
        inner: ast.stmt = ast.ClassDef(name=path[-1], bases=[], keywords=[],
                                       body=list(cp.exec_members), decorator_list=[])
        for part in reversed(path[:-1]):
            inner = ast.ClassDef(name=part, bases=[], keywords=[], body=[inner], decorator_list=[])
        for node in ast.walk(inner):
            if isinstance(node, ast.ClassDef) and not hasattr(node, "lineno"):
                node.lineno = node.col_offset = 0  # type: ignore[attr-defined]
                node.end_lineno = node.end_col_offset = 0  # type: ignore[attr-defined]
        if sys.version_info >= (3, 12):
            for node in ast.walk(inner):
                if isinstance(node, ast.ClassDef) and not hasattr(node, "type_params"):
                    node.type_params = []  # type: ignore[attr-defined]
        ast.fix_missing_locations(inner)
        module_code = _compile_stmts([inner], plan, txn.filename)
        body = module_code
        for part in path:
            body = next(c for c in body.co_consts if isinstance(c, CodeType) and c.co_name == part)
        ns: Dict[str, Any] = {}
        scope = collections.ChainMap(ns, dict(vars(cls)), mod_ns)
        try:
            exec(body, module.__dict__, scope)
        except Exception as exc:
            raise _unless_exhausted(
                exc, f"evaluating the new members of {txn.name}:{cp.qualname}", RefusedError(
                    f"Evaluating the new members of {txn.name}:{cp.qualname} failed: "
                    f"{type(exc).__name__}: {exc}. Nothing was changed.",
                    details={"module": txn.name, "class": cp.qualname})) from exc
        cell = ns.get("__classcell__")
        if cell is not None:
            cell.cell_contents = cls
        for name in cp.bind:
            if name in ns:
                txn.ops.append(Op("attr", cls, name, ns[name], f"{txn.name}:{cp.qualname}.{name}"))
        derived = _lazy_class_caches(cls, set(cp.bind))
        if derived and not txn.has_hooks:
            names = ", ".join(f"{k.__qualname__}.{n}" for k, n in derived)
            raise NeedsHook(
                f"Refused: {txn.name}:{cp.qualname} changes {', '.join(sorted(cp.bind))}, and "
                f"the live class already holds state its own code computed from them on first "
                f"use ({names}: recomputed only when missing). Rebinding the attribute alone "
                "would leave the old behaviour in place, and dropping that state would break "
                "existing instances. Nothing was changed; rebuild with a post_apply hook that "
                "recomputes it (suture build --hooks).",
                details={"module": txn.name, "class": cp.qualname,
                         "derived": [f"{k.__module__}:{k.__qualname__}.{n}" for k, n in derived]})
    for name in cp.delete:
        if name in vars(cls):
            txn.ops.append(Op("attr", cls, name, MISSING, f"del {txn.name}:{cp.qualname}.{name}"))
    if cp.new_bases is not None:
        def evaluate(exprs: List[ast.expr], scope: Mapping[str, Any]) -> Tuple[Any, ...]:
            expr = ast.Expression(body=ast.Tuple(elts=list(exprs), ctx=ast.Load()))
            ast.fix_missing_locations(expr)
            return tuple(eval(compile(expr, txn.filename, "eval", dont_inherit=True),
                              module.__dict__, scope))
        try:
            bases = evaluate(cp.new_bases, collections.ChainMap(mod_ns))
        except Exception as exc:
            raise _unless_exhausted(
                exc, f"evaluating the new bases of {txn.name}:{cp.qualname}", RefusedError(
                    f"Evaluating the new bases of {txn.name}:{cp.qualname} failed: "
                    f"{type(exc).__name__}: {exc}. Nothing was changed.",
                    details={"module": txn.name, "class": cp.qualname})) from exc
        old_cls = dict(_defs.iter_classes(plan.old_tree.body)).get(cp.qualname) \
            if plan.old_tree is not None else None
        try:
            before = evaluate(old_cls.bases, {}) if old_cls is not None else None
        except Exception:
            before = None
        # Spelled differently, the same objects (``TypedDict`` -> ``typing.TypedDict``).
        if before is None or len(before) != len(bases) \
                or any(a is not b for a, b in zip(before, bases)):
            txn.first_ops.append(Op("attr", cls, "__bases__", bases,
                                    f"{txn.name}:{cp.qualname}.__bases__"))


# What @dataclass writes into a class (3.9-3.14), besides the fields' defaults.
_DATACLASS_MADE = ("__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__",
                   "__hash__", "__setattr__", "__delattr__", "__match_args__", "__replace__",
                   "__dataclass_fields__", "__dataclass_params__", "__annotations__",
                   "__annotate__", "__annotate_func__", "__annotations_cache__")


def _regenerate_dataclass(txn: _ModuleTxn, module: types.ModuleType, cls: type,
                          cp: _defs.ClassPlan, plan: _defs.ModulePlan) -> None:
    """A standard-library dataclass whose fields change (starlette 0.40, Werkzeug 2.2.3).

    The new class statement, decorator included, runs on a scratch class; what the
    decorator generated (``__init__``, ``__repr__``, ``__eq__``..., the field table) and the
    fields' class-level defaults become ops on the live class, so existing instances,
    ``isinstance`` and every reference to the class keep working. Methods written in the
    class body are not taken from the scratch class: their code is swapped in place.
    """
    assert plan.new_tree is not None
    node = dict(_defs.iter_classes(plan.new_tree.body))[cp.qualname]
    label = f"{txn.name}:{cp.qualname}"
    children: List[type] = type.__subclasses__(cls)
    subs = [sub for sub in children if "__dataclass_fields__" in vars(sub)]
    if subs:
        raise RestartRequired(
            f"Cannot regenerate dataclass {label} live: {subs[0].__qualname__} is a dataclass "
            "built on it, and its generated __init__ holds the old fields. Nothing was "
            "changed; restart the process.", details={"module": txn.name, "class": cp.qualname})
    written = {st.name for st in node.body
               if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef))}
    scratch: Dict[str, Any] = {}
    code = _compile_stmts([copy.deepcopy(node)], plan, txn.filename)
    try:
        exec(code, module.__dict__, scratch)
        new = scratch[node.name]
        if "__dataclass_fields__" not in vars(new):
            raise TypeError("the decorated class is not a dataclass")
        if repr(new.__dataclass_params__) != repr(cls.__dict__.get("__dataclass_params__")):
            raise TypeError("the dataclass parameters differ from the live class's")
    except Exception as exc:
        raise _unless_exhausted(exc, f"regenerating dataclass {label}", RefusedError(
            f"Regenerating dataclass {label} failed: {type(exc).__name__}: "
            f"{exc}. Nothing was changed.",
            details={"module": txn.name, "class": cp.qualname})) from exc
    fields = set(vars(cls).get("__dataclass_fields__", {})) | set(new.__dataclass_fields__)
    for name in [*_DATACLASS_MADE, *sorted(fields)]:
        if name in written:
            continue
        value, live = vars(new).get(name, MISSING), vars(cls).get(name, MISSING)
        if value is not MISSING or live is not MISSING:
            txn.ops.append(Op("attr", cls, name, value, f"{label}.{name} (dataclass)"))


def _absence_tested(cls: type) -> Set[str]:
    """Names that the code of ``cls``, its bases or its metaclass tests with
    ``'name' in <obj>.__dict__`` (or ``not in``): attributes computed lazily, on first use,
    when missing (Pygments' RegexLexerMeta: ``if '_tokens' not in cls.__dict__``)."""
    codes: List[CodeType] = []
    meta_mro: Tuple[type, ...] = type(cls).__mro__  # type: ignore[assignment]
    for owner in meta_mro + cls.__mro__:
        if owner is object or owner is type:
            continue
        for v in list(vars(owner).values()):
            fn = v.__func__ if _isa(v, (classmethod, staticmethod)) else v
            if type(fn) is FunctionType:
                codes.append(fn.__code__)
    names: Set[str] = set()
    while codes:
        code = codes.pop()
        codes.extend(c for c in code.co_consts if type(c) is CodeType)
        if "__dict__" not in code.co_names:
            continue
        ins = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "EXTENDED_ARG")]
        for n, i in enumerate(ins):
            if i.opname == "LOAD_CONST" and type(i.argval) is str:
                window = ins[n + 1:n + 5]
                if any(w.opname in ("LOAD_ATTR", "LOAD_METHOD") and w.argval == "__dict__"
                       for w in window) and any(w.opname == "CONTAINS_OP" for w in window):
                    names.add(i.argval)
    return names


def _lazy_class_caches(cls: type, changed: Set[str]) -> List[Tuple[type, str]]:
    """(class, name) of lazily computed attributes that may derive from ``changed`` ones.

    Names the class's code computes when missing (``_absence_tested``) and that are
    present now, on ``cls`` and on subclasses that inherit a changed attribute rather than
    override it. Neither keeping them (old behaviour) nor dropping them (existing
    instances read them) is right in general, so the apply needs a hook.
    """
    lazy = _absence_tested(cls) - changed
    if not lazy:
        return []
    out: List[Tuple[type, str]] = []
    todo, seen = [cls], set()
    while todo:
        k = todo.pop()
        if id(k) in seen:
            continue
        seen.add(id(k))
        own = vars(k)
        if k is not cls and changed <= own.keys():
            continue  # overrides every changed name: its derived state is its own
        out.extend((k, n) for n in sorted(lazy) if n in own)
        todo.extend(type.__subclasses__(k))
    return out


def _defaults(txn: _ModuleTxn, module: types.ModuleType, wanted: List[str],
              ns: Dict[str, Any], quals: Dict[int, str]) -> None:
    """Evaluate the fixed defaults of top-level functions and methods named in ``wanted``."""
    if not wanted:
        return
    assert txn.fixed_tree is not None
    nodes = dict(_defs.iter_functions(txn.fixed_tree.body))
    for f in txn.swapped:
        q = quals.get(id(f.__code__))
        if q not in wanted:
            continue
        owner = _resolve_class(module, q.rsplit(".", 1)[0]) if "." in q else None
        pending = {op.key: op.new for op in txn.ops
                   if owner is not None and op.kind == "attr" and op.obj is owner}
        defaults, kwdefaults = _eval_defaults(module, q, nodes[q], ns, txn.filename, pending)
        target = txn.forwarded.get(id(f))
        if target is not None:  # not live yet: set it directly, the old object forwards to it
            target.__defaults__ = defaults or None
            target.__kwdefaults__ = kwdefaults or None
            continue
        txn.ops.append(Op("attr", f, "__defaults__", defaults or None, f"{txn.name}:{q} defaults"))
        txn.ops.append(Op("attr", f, "__kwdefaults__", kwdefaults or None,
                          f"{txn.name}:{q} kwdefaults"))


def _eval_defaults(module: types.ModuleType, q: str, node: _defs.FuncNode,
                   ns: Dict[str, Any], filename: str,
                   pending: Optional[Dict[str, Any]] = None) -> Tuple[Any, Any]:
    """Evaluate a def's default expressions as its module (or class body) would.

    ``pending``: the class attributes this patch is about to set on the owner class.
    """
    owner = _resolve_class(module, q.rsplit(".", 1)[0]) if "." in q else None
    # a class body reads its own namespace first, then the module's
    scope = collections.ChainMap({k: v for k, v in (pending or {}).items() if v is not MISSING},
                                 dict(vars(owner)) if owner else {}, ns)
    a = node.args
    defaults_expr = ast.Expression(body=ast.Tuple(elts=list(a.defaults), ctx=ast.Load()))
    kw = [(arg.arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    kw_expr = ast.Expression(body=ast.Dict(keys=[ast.Constant(k) for k, _ in kw],
                                           values=[d for _, d in kw]))
    for e in (defaults_expr, kw_expr):
        ast.fix_missing_locations(e)
    try:
        defaults = eval(compile(defaults_expr, filename, "eval", dont_inherit=True),
                        module.__dict__, scope)
        kwdefaults = eval(compile(kw_expr, filename, "eval", dont_inherit=True),
                          module.__dict__, scope)
    except Exception as exc:
        raise _unless_exhausted(
            exc, f"evaluating the new defaults of {module.__name__}:{q}", RefusedError(
                f"Evaluating the new defaults of {module.__name__}:{q} failed: "
                f"{type(exc).__name__}: {exc}. Nothing was changed.",
                details={"module": module.__name__, "function": q})) from exc
    return defaults or None, kwdefaults or None


def _propagate(txn: _ModuleTxn, copies: List[Tuple[Dict[str, Any], str, Any]],
               depth: int = 3) -> None:
    """Modules that imported a rebound constant recompute what they derived from it.

    ``uploads`` did ``from limits import MAX_UPLOAD`` and, at import,
    ``HARD_CAP = MAX_UPLOAD * 2`` and ``def accept(size, cap=MAX_UPLOAD)``.
    The copy of MAX_UPLOAD is rebound (``_importers``); here the derived
    assignments run again from the module's own source (its real file name and
    lines), defaults and class attributes that read them are evaluated again,
    and what they rebind propagates in turn, ``depth`` modules deep.
    """
    by_dict: Dict[int, Tuple[types.ModuleType, Dict[str, Any]]] = {}
    for d, alias, value in copies:
        mod = next((m for m in list(sys.modules.values()) if _own_dict(m) is d), None)
        if mod is not None:
            by_dict.setdefault(id(d), (mod, {}))[1][alias] = value
    for mod, changed in by_dict.values():
        # a module of this patch is read from its fixed source, any other from its loader
        fixed = txn.sources.get(mod.__name__)
        tree = ast.parse(fixed) if fixed is not None else _source_tree(mod)
        if tree is None:
            continue
        dep = _defs.dependents(tree, set(changed))
        if not (dep.stmts or dep.defaults or dep.class_attrs):
            continue
        filename = getattr(mod, "__file__", None) or f"<{mod.__name__}>"
        ns: Dict[str, Any] = dict(changed)
        d = mod.__dict__
        try:
            if dep.stmts:
                exec(compile(ast.Module(body=dep.stmts, type_ignores=[]), filename, "exec",
                             dont_inherit=True), d, ns)
            for q, stmt in dep.class_attrs:
                cls = _resolve_class(mod, q)
                targets = getattr(stmt, "targets", [getattr(stmt, "target", None)])
                if cls is None or len(targets) != 1 or not isinstance(targets[0], ast.Name):
                    continue
                expr = ast.Expression(body=stmt.value)  # type: ignore[attr-defined]
                value = eval(compile(expr, filename, "eval", dont_inherit=True), d,
                             collections.ChainMap(ns, dict(vars(cls))))
                txn.ops.append(Op("attr", cls, targets[0].id, value,
                                  f"{mod.__name__}:{q}.{targets[0].id} (from {txn.name})"))
        except Exception as exc:
            raise _unless_exhausted(
                exc, f"recomputing what {mod.__name__} derived from {txn.name}", RefusedError(
                    f"Recomputing what {mod.__name__} derived from {txn.name} failed: "
                    f"{type(exc).__name__}: {exc}. Nothing was changed.",
                    details={"module": mod.__name__})) from exc
        rebound: Dict[str, Any] = {}
        for name in sorted(dep.names):
            old = d.get(name, MISSING)
            if name in ns and old is not ns[name]:
                txn.ops.append(Op("item", d, name, ns[name],
                                  f"{mod.__name__}.{name} (from {txn.name})"))
                if old is not MISSING:
                    rebound[name] = old
                    txn.watch.append((f"{mod.__name__}.{name}", old))
        funcs = {id(f.__code__): f for f in gc.get_referrers(d) if type(f) is FunctionType}
        quals = _codes.live_qualnames(list(funcs.values()))
        wanted = dict(dep.defaults)
        for code_id, q in quals.items():
            f = funcs.get(code_id)
            if f is None or q not in wanted:
                continue
            defaults, kwdefaults = _eval_defaults(mod, q, wanted[q], ns, filename)
            txn.ops.append(Op("attr", f, "__defaults__", defaults,
                              f"{mod.__name__}:{q} defaults (from {txn.name})"))
            txn.ops.append(Op("attr", f, "__kwdefaults__", kwdefaults,
                              f"{mod.__name__}:{q} kwdefaults (from {txn.name})"))
        if depth > 0 and rebound:
            further = _importers(mod.__name__, rebound)
            for alias_dict, alias, name in further:
                txn.ops.append(Op("item", alias_dict, alias, ns[name],
                                  f"copy of {mod.__name__}.{name}"))
            _propagate(txn, [(ad, a, ns[n]) for ad, a, n in further], depth - 1)


def _source_tree(module: types.ModuleType) -> Optional[ast.Module]:
    source = None
    loader = getattr(module, "__loader__", None)
    try:
        if loader is not None and hasattr(loader, "get_source"):
            source = loader.get_source(module.__name__)
    except Exception as exc:  # no source (extension module, zip without it): nothing to find
        _raise_os_failure(exc, getattr(module, "__file__", None),
                          f"reading the source of {module.__name__}")
        source = None
    if source is None:
        return None
    try:
        return ast.parse(str(source))
    except SyntaxError:
        return None


# -- steps 3 and 4 ----------------------------------------------------------------

def _commit_ops(ops: List[Any], live: List[_ModuleTxn], before: List[Any] = ()) -> int:  # type: ignore[assignment]
    if any("plain and generator" in n for t in live for n in t.notes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _commit.run(ops, before)
    return _commit.run(ops, before)


def _late(rec: _Record, live: List[_ModuleTxn]) -> List[Any]:
    """Second phase: evaluate module objects whose construction the patch changed.

    They must be built by the *new* code, which only exists after the first
    commit. Between the two commits other threads may see new code next to the
    old object, exactly as they would through any reference the old object
    still has; the builder reports these as caveats.
    """
    ops: List[Any] = []
    for t in live:
        if not t.late_stmts:
            continue
        assert t.plan is not None and t.fixed_tree is not None
        module = sys.modules[t.name]
        before = len(t.ops)   # _exec_stmts adds the ops of attribute/item assignments
        ns = _exec_stmts(t, module, t.late_stmts)
        _bind_module(t, module, t.plan, ns, late=True)
        quals = _codes.live_qualnames(t.swapped)
        wanted = [q for q, fn in _defs.iter_functions(t.fixed_tree.body)
                  if "<locals>" not in q
                  and _defs._names_in([*fn.args.defaults, *fn.args.kw_defaults]) & set(ns)]
        _defaults(t, module, wanted, ns, quals)
        ops.extend(t.ops[before:])
    return ops


def _leftovers(txn: _ModuleTxn) -> List[str]:
    """Report references to replaced objects that the patch could not reach.

    Runs after the commit, so the module dicts the patch rebound no longer
    count. One ``gc.get_referrers`` heap walk per module, and only when the
    patch rebound objects that are not plain values (ints, strings, tuples...),
    compiled regexes (shared through ``re``'s cache by design), functions or
    classes (patched in place).
    """
    watched = [(label, o) for label, o in txn.watch
               if not _isa(o, _IMMUTABLE + (type, FunctionType, type(re.compile(""))))][:20]
    if not watched:
        return []
    targets = tuple(o for _, o in watched)   # passed as is: this tuple is ours too
    ours = {id(txn.watch), id(watched), id(targets)} | {id(p) for p in txn.watch} | {
        id(p) for p in watched}
    by_id = {id(o): label for label, o in watched}
    counts: Dict[str, List[str]] = {}
    for r in gc.get_referrers(*targets):
        if id(r) in ours or _isa(r, (Op, types.FrameType)):
            continue
        for target in gc.get_referents(r):
            label = by_id.get(id(target))
            if label is not None:
                counts.setdefault(label, []).append(type(r).__name__)
    return [f"{label}: {len(kinds)} reference(s) to the old object remain "
            f"({', '.join(sorted(set(kinds)))}); they keep seeing the old object"
            for label, kinds in sorted(counts.items())]


def _migrate(rec: _Record) -> None:
    migrations = getattr(rec.hooks, "MIGRATIONS", None) if rec.hooks else None
    if not migrations:
        return
    targets: Dict[type, Any] = {}
    for key, fn in migrations.items():
        modname, _, qual = key.partition(":")
        module = sys.modules.get(modname)
        cls = _resolve_class(module, qual) if module else None
        if cls is not None:
            targets[cls] = fn
    if not targets:
        return
    objs = [o for cls in targets for o in gc.get_referrers(cls) if type(o) is cls]
    slots = {cls: _slot_descriptors(cls) for cls in targets}
    for o in objs:
        snapshot = dict(o.__dict__) if hasattr(o, "__dict__") else {}
        rec.migrated.append((o, snapshot, [(d, _slot_get(d, o)) for d in slots[type(o)]]))
        try:
            targets[type(o)](o)
        except Exception as exc:
            _unmigrate(rec)
            raise HookFailed(f"Migration of {type(o).__qualname__} instances failed in patch "
                             f"{rec.patch.short_id}: {type(exc).__name__}: {exc}. Every "
                             "migrated instance's attributes were restored and the patch was "
                             "not applied (what a migration changed inside the objects those "
                             "attributes refer to, such as a list.append, is not undone).",
                             details={"patch": rec.patch.id}) from exc


def _unmigrate(rec: _Record) -> None:
    for obj, snapshot, slot_values in reversed(rec.migrated):
        if hasattr(obj, "__dict__"):
            obj.__dict__.clear()
            obj.__dict__.update(snapshot)
        for desc, value in slot_values:
            if _slot_get(desc, obj) is value:
                continue
            if value is MISSING:
                desc.__delete__(obj)
            else:
                desc.__set__(obj, value)
    rec.migrated.clear()


# A migration may set slots as well as __dict__ entries (instances with __slots__ have
# no __dict__ at all), so both are snapshotted. Slots are read and written through their
# descriptors, so a class's own __getattribute__/__setattr__ cannot get in the way.
def _slot_descriptors(cls: type) -> List[Any]:
    return [d for c in cls.__mro__ for d in vars(c).values()
            if type(d) is types.MemberDescriptorType]


def _slot_get(desc: Any, obj: Any) -> Any:
    try:
        return desc.__get__(obj, type(obj))
    except AttributeError:  # an empty slot
        return MISSING


def _run_hook(rec: _Record, name: str, ctx: "HookContext", refuse: bool) -> None:
    fn = getattr(rec.hooks, name, None) if rec.hooks else None
    if fn is None:
        return
    try:
        fn(ctx)
    except Exception as exc:
        if refuse:
            raise HookFailed(f"{name} hook of patch {rec.patch.short_id} refused: "
                             f"{type(exc).__name__}: {exc}. Nothing was changed.",
                             details={"patch": rec.patch.id, "hook": name}) from exc
        raise


# -- import-time patching -------------------------------------------------------

def _pending_index() -> Dict[str, str]:
    return {m: r.patch.id for r in _applied.values() for m, s in r.modules.items()
            if s == "pending import"}


def _added_index() -> Dict[str, Tuple[str, str, bool]]:
    out: Dict[str, Tuple[str, str, bool]] = {}
    for r in _applied.values():
        out.update(_added_entries(r.patch))
    return out


def _added_entries(patch: Patch) -> Dict[str, Tuple[str, str, bool]]:
    names = [m.name for m in patch.modules if m.action == "add"]
    return {m.name: (m.fixed.whole, patch.short_id, any(n.startswith(m.name + ".") for n in names))
            for m in patch.modules if m.action == "add"}


def _forget_modules(names: List[str]) -> None:
    """Undo the import of these modules: drop them from sys.modules and their parent."""
    for name in sorted(names, reverse=True):  # children first
        module = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if module is not None and parent in sys.modules \
                and (_own_dict(sys.modules[parent]) or {}).get(child) is module:
            delattr(sys.modules[parent], child)


def patch_on_import(name: str, module: types.ModuleType) -> None:
    """Called by the import hook right after a pending module executed."""
    with _lock():
        for rec in _applied.values():
            if rec.modules.get(name) != "pending import":
                continue
            mp = next(m for m in rec.patch.modules if m.name == name)
            try:
                if rec.owner is not None:   # the file found may not be the one checked at apply
                    _members.check_loaded(rec.patch, rec.owner, name, module)
                if mp.compact:
                    mp = _resolved(rec.patch, mp, module)
                    rec.patch = dataclasses.replace(rec.patch, modules=tuple(
                        mp if m.name == name else m for m in rec.patch.modules))
                txn = _prepare(rec, mp, module, _plan(rec.patch, mp))
                if txn.state == "applied":
                    ops = txn.first_ops + txn.ops
                    _commit_ops(ops, [txn])
                    try:
                        late = _late(rec, [txn])
                        if late:
                            _commit_ops(late, [txn])
                    except BaseException:
                        _commit.restore(ops)
                        raise
                    rec.ops.extend(ops + late)
                    rec.old_codes.update(txn.old_codes)
                    rec.filenames[name] = txn.filename
                rec.modules[name] = txn.state
            except SutureError as exc:
                rec.modules[name] = f"refused at import: {exc.message}"
            _hook.refresh(_pending_index(), _added_index())


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


# -- activeness ---------------------------------------------------------------------

def active(old: Dict[int, Tuple[Any, ...]]) -> List[Dict[str, Any]]:
    """Threads, suspended generators/coroutines and tasks still executing old code."""
    if not old:
        return []
    out: List[Dict[str, Any]] = []
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        f: Optional[types.FrameType] = frame
        while f is not None:
            hit = old.get(id(f.f_code))
            if hit is not None and hit[0] is f.f_code:
                out.append({"qualname": hit[1], "where": "thread", "patch": _pid(hit),
                            "thread": names.get(ident, str(ident))})
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
            out.append({"qualname": hit[1], "where": kind, "patch": _pid(hit)})
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


# -- helpers ------------------------------------------------------------------------

def _find(patch_id: str) -> _Record:
    matches = [r for pid, r in _applied.items() if pid.startswith(patch_id)] if patch_id else []
    if len(matches) != 1:
        raise UnknownPatch(f"No applied patch has id {patch_id!r}"
                           + (" (ambiguous prefix)" if len(matches) > 1 else "") +
                           f"; applied: {', '.join(p[:12] for p in _applied) or 'none'}.",
                           details={"patch": patch_id})
    return matches[0]


def _register_source(filename: str, source: str) -> None:
    """Tracebacks and inspect.getsource read patched code from here (never from disk)."""
    lines = source.splitlines(True)
    linecache.cache[filename] = (len(source), None, lines, filename)


class HookContext:
    """What hooks get: the live modules and a place for new per-object data."""

    def __init__(self, patch: Patch) -> None:
        self.patch_id = patch.id
        self.patch = patch

    def module(self, name: str) -> Optional[types.ModuleType]:
        return sys.modules.get(name)

    def shadow(self, obj: Any) -> Dict[str, Any]:
        return shadow(obj)


_shadows: Dict[int, Tuple[Any, Dict[str, Any]]] = {}


def shadow(obj: Any) -> Dict[str, Any]:
    """A dict of extra data attached to ``obj`` without touching its layout.

    Kernel livepatch calls these shadow variables: classes with ``__slots__``
    cannot gain attributes, so new per-instance data lives beside the object.
    Objects that support weak references drop their shadow when they die;
    others keep it (and themselves) alive until ``drop_shadow``.
    """
    entry = _shadows.get(id(obj))
    if entry is not None and (entry[0]() if isinstance(entry[0], weakref.ref) else entry[0]) is obj:
        return entry[1]
    data: Dict[str, Any] = {}
    key = id(obj)
    try:
        ref: Any = weakref.ref(obj, functools.partial(_drop_shadow_key, key))
    except TypeError:
        ref = obj
    _shadows[key] = (ref, data)
    return data


def _drop_shadow_key(key: int, _ref: Any) -> None:
    _shadows.pop(key, None)


def drop_shadow(obj: Any) -> None:
    _shadows.pop(id(obj), None)


def _reset_for_tests() -> None:  # pragma: no cover - used by in-process tests only
    with _lock():
        _applied.clear()
        _hook.refresh({}, {})

