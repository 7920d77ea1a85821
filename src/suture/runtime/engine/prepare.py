"""Step 2: prepare one loaded module into a list of ops, changing nothing.

Enters: the patch's ``ModulePatch``, the live module and its ``ModulePlan`` (from check).
Leaves: one ``_ModuleTxn``: ``ops`` and ``first_ops`` for the commit, the late
statements that post evaluates after it, the old code objects (activeness), the
objects whose leftover references post reports.
Run-pre matching: every live function of the module is matched to the baseline by
qualname and structure; a function that matches neither the baseline nor the fixed
code refuses (``BaselineMismatch``). Classes (``_prepare_class``), dataclasses
regenerated (``_regenerate_dataclass``) and forwarders for bound methods held
elsewhere (``_forwarding``) are prepared here too.
Invariant: nothing the application can see changes in this step; every change is
an op. Over 500 lines because run-pre matching and class preparation share one
``_ModuleTxn`` walk; the shared analysis they both use is already in
``_scratch`` and ``_refgraph``.
"""

from __future__ import annotations

import ast
import collections
import copy
import dataclasses
import dis
import gc
import importlib.util
import sys
import re
import threading
import time
import types
from types import CodeType, FunctionType
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

from .._defs import syntax as _syntax
from .. import _codes, _defs, _fingerprint
from .commit import MISSING, Call, Op
from ..errors import (BaselineMismatch, NeedsHook, PatchFormatError, RefusedError, RestartRequired,
                      ScriptChanged, ScriptNotPatchable)
from ..patchfile import ModulePatch, Patch
from . import _activeness, _annotations
from ._refgraph import _lru_wrappers, _module_functions, _resolve_class
from .check import is_main, main_frame, main_guards, releases_note
from ._scratch import _bind_module, _compile_stmts, _defaults, _exec_stmts, _late_split
from ._state import (_LRU_MARK, _LRU_TYPE, _ModuleTxn, _Record, _applied, _isa, _own_dict,
                     state_names,
                     _register_source, _unless_exhausted)


def _module_files(name: str, module: types.ModuleType) -> Set[str]:
    files = {module.__file__} if getattr(module, "__file__", None) else set()
    for r in _applied.values():
        if name in r.filenames:
            files.add(r.filenames[name])
    return files  # type: ignore[return-value]


def _prepare(rec: _Record, mp: ModulePatch, module: types.ModuleType,
             plan: _defs.ModulePlan, again: bool = False) -> _ModuleTxn:
    """``again``: ``rec`` patched this module before and its code ran again (a reload) or
    was reverted by the application; functions running code that ``rec`` or a patch
    stacked on it installed (the earlier generation, aliases of it) are left as they are,
    and only the others must match the baseline."""
    patch = rec.patch
    records = list(_applied.values())
    ours = {r.filenames.get(mp.name) for r in records[records.index(rec):]} - {None} \
        if again and rec in records else set()
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

    script = is_main(module)
    if script:
        _script_checks(patch, mp, module, plan, b_code, f_code, same)
    lines = _fixed_lines(patch, mp.name)

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
        if q is None or (script and q == "<module>"):
            continue   # a script's running top level (3.11+ makes it a function): checked above
        if live.co_filename in ours:
            on_fixed.add(q)   # already on code this patch (or one stacked on it) installed
            continue
        if any(same(c, live) for c in base_stubs.get(q, ())):
            continue  # an @overload stub kept by typing's registry: never called
        cands = base.get(q, [])
        match = _match(cands, live, same)
        if isinstance(match, list):
            # several identical definitions at one place and this Python records no
            # columns: guess only if the fix leaves them all the same
            alike = fixed.get(q) or []
            if len(alike) == len(cands) and all(same(alike[i], alike[match[0]])
                                                for i in match):
                match = match[0]
            else:
                blocked.append(f"{q}: several identical definitions on line "
                               f"{live.co_firstlineno}, of which the fix changes some: "
                               "which one a function created before the patch is cannot be "
                               "told on this Python (3.11+ records columns)")
                continue
        idx = match
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
        if len(targets) > 1 and q in lines:
            # several defs share the name (a class-body ``if``): the one a fresh import of
            # the fixed release binds, by its line (the state manifest), not by position
            new = next((c for c in targets if c.co_firstlineno == lines[q]), new)
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
    if mismatched or (on_base and on_fixed and not again):
        first = mismatched[0] if mismatched else sorted(on_fixed)[0]
        releases, known = releases_note(patch, module)
        raise BaselineMismatch(
            f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} does not match "
            f"the baseline: `{mp.name}:{first}` differs from the code the patch was built "
            f"against (sha256 {mp.baseline.sha256[:12]}\u2026).{releases} Nothing was "
            "changed. Check which version the process runs, then rebuild the patch from that "
            "version.",
            details={"module": mp.name, "first": first, "mismatched": mismatched,
                     "baseline_sha256": mp.baseline.sha256, **known})
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
        # Every wrapper refers to _LRU_MARK, so the walk that found the module's functions
        # found every wrapper too; without a mark, ask for the changed functions.
        found = ([w for _, w in _lru_wrappers()] if _LRU_MARK is not None
                 else gc.get_referrers(*changed))
        changed_ids = {id(f) for f in changed}
        wrappers = [w for w in found if type(w) is _LRU_TYPE
                    and id(getattr(w, "__wrapped__", None)) in changed_ids]
        txn.ops.extend(Call(w.cache_clear, f"cache_clear {mp.name}") for w in wrappers)
        txn.cleared.update(id(w) for w in wrappers)
    _register_source(txn.filename, mp.fixed.whole)

    plan = _keep_equal_values(txn, patch, module, plan)
    txn.plan = plan
    txn.fixed_tree = plan.new_tree or ast.parse(mp.fixed.whole)
    _check_run_time_state(txn, module, plan)
    txn.swapped = [f for f, _, _ in swaps]
    others = {m.name for m in patch.modules if m.name != mp.name}
    held = {k: v.__name__ for k, v in (_own_dict(module) or {}).items()
            if type(v) is types.ModuleType and type(k) is str
            and isinstance(getattr(v, "__name__", None), str) and v.__name__ in others}
    early, txn.late_stmts = _late_split(
        plan, (_own_dict(module) or {}).get("__package__") or "", others, held)
    mod_ns = _exec_stmts(txn, module, early)
    for cp in plan.classes:
        _prepare_class(txn, module, cp, plan, mod_ns)
    _bind_module(txn, module, plan, mod_ns, late=False)
    _defaults(txn, module, plan.recompute_defaults, mod_ns, quals)
    _annotations.carry(txn, module, plan, mod_ns, quals)
    if warn_kind and sys.version_info >= (3, 13):
        txn.notes.append("a function changes between plain and generator/coroutine code")
    if script:
        _script_frames(patch, mp, module, txn)
    return txn


# -- scripts (check.running_as_main): what a patch cannot give a running __main__ -----
#
# A module imported by name ran its top level once, at import, and is done with it: a
# patch rebinds what that top level bound. A script's top level is the program: it runs
# from start to exit, and its ``if __name__ == "__main__":`` block (which an import by
# name skips, so _defs calls a change there "code that never runs") ran at start and may
# be running now. Neither is re-run by a patch. So, for the module running as __main__:
# its running top-level code must be the baseline's (not merely its file on disk), its
# main block and the top-level statement running now must be unchanged, and no frame of
# a changed function may stay on a thread's stack for the whole wait (the function that
# runs the script's loop would finish, i.e. never, on the old code). Each refuses with
# SUT-E213/E214, nothing changed; a restart runs the fixed script.

SCRIPT_WAIT_SECONDS = 2.0   # as _objects.FRAME_WAIT_SECONDS


def _script_checks(patch: Patch, mp: ModulePatch, module: types.ModuleType,
                   plan: _defs.ModulePlan, b_code: CodeType, f_code: CodeType,
                   same: Any) -> None:
    assert mp.baseline is not None
    where = f"{mp.name} runs here as __main__ (the script {getattr(module, '__file__', '?')})"
    frame = main_frame(module)
    if frame is not None and not same(frame.f_code, b_code):
        if same(frame.f_code, f_code):
            return   # the fixed script runs: its functions say "already fixed" below
        raise ScriptChanged(
            f"Refused patch {patch.short_id} ({patch.describe()}): {where}, and the code it "
            f"runs is not the baseline (sha256 {mp.baseline.sha256[:12]}\u2026): its top "
            "level differs from the code the patch was built against, so the script's file "
            "changed since it started or another version of it runs. Nothing was changed. "
            "Rebuild the patch from the version the script runs, or restart the script.",
            details={"module": mp.name, "main": True, "first": "<module>",
                     "file": getattr(module, "__file__", None),
                     "baseline_sha256": mp.baseline.sha256})
    old_tree = plan.old_tree or ast.parse(mp.baseline.whole)
    new_tree = plan.new_tree or ast.parse(mp.fixed.whole)
    why = ""
    if main_guards(old_tree) != main_guards(new_tree):
        why = ("the fix changes its `if __name__ == \"__main__\":` block, which ran when the "
               "script started (and may run still); a patch does not run it again")
    elif frame is not None:
        fixed = {ast.dump(st) for st in new_tree.body}
        for st in old_tree.body:
            if st.lineno <= frame.f_lineno <= (getattr(st, "end_lineno", None) or st.lineno) \
                    and ast.dump(st) not in fixed:
                why = (f"the fix changes the top-level statement running now (line "
                       f"{frame.f_lineno}, {type(st).__name__.lower()} on line {st.lineno}), "
                       "which finishes on the code it started with")
    if why:
        raise ScriptNotPatchable(
            f"Refused patch {patch.short_id} ({patch.describe()}): {where}: {why}. Nothing "
            f"was changed; restart the script to run the fixed version.{_by_name(mp.name)}",
            details={"module": mp.name, "main": True, "file": getattr(module, "__file__", None),
                     "reason": why})


def _by_name(name: str) -> str:
    """What the refusal adds when ``name`` is also importable here by its name (a spec is
    found: for a top-level name, or a submodule of an imported package, finding one runs
    no code of the application)."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return ""
    try:
        found = importlib.util.find_spec(name) is not None
    except Exception:  # noqa: BLE001 - a broken finder: say nothing
        return ""
    return (f" {name} is also importable here by its name: a process that imports it (rather "
            "than running it as its script) gets the patch" if found else "")


def _script_frames(patch: Patch, mp: ModulePatch, module: types.ModuleType,
                   txn: _ModuleTxn) -> None:
    """Refuse if one frame of a changed function of the script stays on a thread's stack
    for the whole wait. The same frame object, not the same function: a function called
    over and over (the usual loop body) is on some stack at most looks, in a new frame
    each time, and gets the fix at its next call."""
    if not txn.old_codes:
        return
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}

    def frames() -> Dict[int, Tuple[Any, ...]]:
        out: Dict[int, Tuple[Any, ...]] = {}
        for ident, top in _activeness.thread_frames().items():
            f: Optional[types.FrameType] = top
            while f is not None and ident != me:
                hit = txn.old_codes.get(id(f.f_code))
                if hit is not None and hit[0] is f.f_code:
                    out[id(f)] = (f, hit[1], names.get(ident, str(ident)))
                f = f.f_back
        return out

    stuck = frames()
    deadline = time.monotonic() + SCRIPT_WAIT_SECONDS
    while stuck and time.monotonic() < deadline:
        time.sleep(0.01)
        now = frames()
        stuck = {k: v for k, v in stuck.items() if k in now and now[k][0] is v[0]}
    if stuck:
        where = "; ".join(f"{q} (thread {t}, line {f.f_lineno})" for f, q, t in
                          list(stuck.values())[:5])
        why = (f"a changed function stayed in the same call for the whole wait "
               f"({SCRIPT_WAIT_SECONDS:g} s): {where}; it runs the script's loop, or a long "
               "call: a running call finishes on the old code, and the fix would reach it "
               "only at its next call, which a loop never makes. Retry when it has returned")
        stuck.clear()   # no frame kept alive by the refusal
        raise ScriptNotPatchable(
            f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} runs here as "
            f"__main__ (the script {getattr(module, '__file__', '?')}): {why}. Nothing was "
            f"changed; restart the script to run the fixed version.{_by_name(mp.name)}",
            details={"module": mp.name, "main": True, "file": getattr(module, "__file__", None),
                     "reason": why})


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


def _keep_equal_values(txn: _ModuleTxn, patch: Patch, module: types.ModuleType,
                       plan: _defs.ModulePlan) -> _defs.ModulePlan:
    """``plan`` without the changed ``NAME = expr`` statements whose value a fresh import of
    either release makes alike (the manifest's ``same``, tooling/build/state.py): the live
    object is already what the fixed release's import holds there, and evaluating the new
    statement would give a new object that the other import-time code never filled
    (setuptools 70's ``_distribution_finders = _declare_state(...)``, filled by
    ``register_finder`` calls at import). Kept too when the process changed it since: run-time
    state is never overwritten (a note says so). Not for a name other evaluated statements
    touch (a chain runs whole)."""
    state = patch.meta.get("state")
    entry = state.get("modules", {}).get(txn.name) if isinstance(state, dict) else None
    same = entry.get("same") if isinstance(entry, dict) and entry.get("verified") else None
    if not same:
        return plan
    ns = _own_dict(module) or {}
    as_name, root = state_names(txn.name, module)
    drop: List[ast.stmt] = []
    for stmt in plan.exec_stmts:
        names = _syntax.bound_names(stmt)
        if (_syntax.stmt_category(stmt) != "assign" or len(names) != 1 or names[0] not in same
                or names[0] not in ns or any(names[0] in _syntax.touched_names(other)
                                             for other in plan.exec_stmts if other is not stmt)):
            continue
        drop.append(stmt)
        if _fingerprint.fingerprint_at(ns, as_name, [("g", names[0])], root=root) \
                != same[names[0]]:
            txn.notes.append(f"{txn.name}.{names[0]}: kept as the process holds it (a fresh "
                             "import of either release gives the same value; this process "
                             "changed it since)")
    if not drop:
        return plan
    gone = {n for st in drop for n in _syntax.bound_names(st)}
    return dataclasses.replace(plan, exec_stmts=[s for s in plan.exec_stmts if s not in drop],
                               bind=[n for n in plan.bind if n not in gone])


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
    old_k = _syntax._keyed(plan.old_tree.body)
    run = {id(s) for s in plan.exec_stmts}
    live_ns = _own_dict(module) or {}
    for key, stmt in _syntax._keyed(plan.new_tree.body).items():
        before = old_k.get(key)
        if id(stmt) not in run or not isinstance(before, ast.Assign) \
                or _syntax.stmt_category(stmt) != "assign" or len(before.targets) != 1 \
                or not isinstance(before.targets[0], ast.Name):
            continue
        name = before.targets[0].id
        if sum(name in _syntax.touched_names(st) for st in plan.old_tree.body) != 1:
            continue   # built by several statements: its value is not this literal alone
        try:
            value = ast.literal_eval(before.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if name in live_ns and not txn.has_hooks and not _same_literal(live_ns[name], value):
            raise NeedsHook(
                f"Refused: {txn.name}.{name} was set to {_syntax._text(before).split('=', 1)[1].strip()}"
                f" at import, but now holds a {type(live_ns[name]).__name__} the process built "
                f"since; the patch changes its statement, and rebinding it would throw that "
                "state away. Nothing was changed; rebuild with a hook that carries the state "
                "over (suture build --hooks).", details={"module": txn.name, "name": name})


def _drop_overloads(codes: Dict[str, List[CodeType]], tree: Optional[ast.Module]
                    ) -> Tuple[Dict[str, List[CodeType]], Dict[str, List[CodeType]]]:
    """Split the code of ``@overload`` stubs off ``codes`` (qualname -> code, in order)."""
    flags: Dict[str, List[bool]] = {}
    for q, fn in _syntax.iter_functions(tree.body if tree is not None else [], overloads=True):
        flags.setdefault(q, []).append(_syntax.is_overload(fn))
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


def _match(cands: List[CodeType], live: CodeType, same: Any) -> Union[None, int, List[int]]:
    """The index of the baseline code ``live`` runs among ``cands`` (one qualified name's
    code objects, in source order). Several can be the same code (two ``lambda x: x`` in
    one dict, of which the fix changes one): then the one at ``live``'s place in the
    source, by first line and, where the version records them (3.11+), columns; the
    indices still tied when those cannot tell (a list)."""
    hits = [i for i, c in enumerate(cands) if same(c, live)]
    if len(hits) <= 1:
        return hits[0] if hits else None
    here = [i for i in hits if cands[i].co_firstlineno == live.co_firstlineno] or hits
    where = _positions(live)
    if len(here) > 1 and where is not None:
        here = [i for i in here if _positions(cands[i]) == where] or here
    return here[0] if len(here) == 1 else here


def _positions(code: CodeType) -> Optional[List[Any]]:
    """Each instruction's (line, end line, column, end column): 3.11+; None before."""
    positions = getattr(code, "co_positions", None)
    return list(positions()) if positions is not None else None


def _fixed_lines(patch: Patch, module: str) -> Dict[str, int]:
    """Qualified name -> first line of the function that a fresh import of the fixed
    release binds there, for the functions the state manifest records (their description
    says "function Q (line N)")."""
    state = patch.meta.get("state")
    entry = state.get("modules", {}).get(module) if isinstance(state, dict) else None
    out: Dict[str, int] = {}
    for p in entry.get("paths", []) if isinstance(entry, dict) else []:
        described = p.get("describe")
        if not isinstance(described, list) or len(described) != 2:
            continue
        m = re.fullmatch(r"function (\S+) \(line (\d+)\)", str(described[1]))
        if m and all(kind in ("g", "a") for kind, _ in p["path"]):
            out[m.group(1)] = int(m.group(2))
    return out


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
        # type_params (3.12+) is set below, after construction: typeshed requires it of
        # ClassDef() on 3.12 only, and older Pythons have no such field.
        inner: ast.stmt = ast.ClassDef(  # type: ignore[call-arg]
            name=path[-1], bases=[], keywords=[], body=list(cp.exec_members), decorator_list=[])
        for part in reversed(path[:-1]):
            inner = ast.ClassDef(  # type: ignore[call-arg]
                name=part, bases=[], keywords=[], body=[inner], decorator_list=[])
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
        # a name no class of its MRO has yet (an added method) is no input of state the
        # old code computed
        known = {n for n in cp.bind if any(n in vars(k) for k in type.__dict__["__mro__"]
                                           .__get__(cls))}
        derived = _lazy_class_caches(cls, known) if known else []
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
        old_cls = dict(_syntax.iter_classes(plan.old_tree.body)).get(cp.qualname) \
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


# What @dataclass writes into a class (3.9-3.15), besides the fields' defaults.
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
    node = dict(_syntax.iter_classes(plan.new_tree.body))[cp.qualname]
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


_FROM_BASES = frozenset(("__orig_bases__", "__parameters__", "__type_params__"))


def _lazy_class_caches(cls: type, changed: Set[str]) -> List[Tuple[type, str]]:
    """(class, name) of lazily computed attributes that may derive from ``changed`` ones.

    Names the class's code computes when missing (``_absence_tested``) and that are
    present now, on ``cls`` and on subclasses that inherit a changed attribute rather than
    override it. Neither keeping them (old behaviour) nor dropping them (existing
    instances read them) is right in general, so the apply needs a hook.
    """
    # What class creation computes from the bases alone (typing.Generic's bookkeeping)
    # cannot derive from members; a change of bases is a change of its own ("changed
    # class bases"), which the caller handles.
    lazy = _absence_tested(cls) - changed - _FROM_BASES
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
