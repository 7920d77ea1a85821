"""Step 1: check the patch against itself and against the applied patches.

Enters: a verified ``Patch`` and the apply's one look at ``sys.modules`` (``_loaded``).
Leaves: the patch with compact modules resolved (``_with_sources``), one
``_defs.ModulePlan`` per module derived again from the patch's own sources
(``_check``), the applied patches it replaces (``_replaced_by``), its hooks module
(``_load_hooks``). Nothing in the process is changed here.
Invariant: a plan that differs from the change list the builder wrote, a
restart-required change, or a hook-needing change without hooks refuses the patch.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
import threading
import types
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .. import _defs, _members
from ..errors import (BaselineMismatch, HookFailed, NeedsHook, PatchFormatError, RestartRequired,
                      RevertOrderError, ScriptChanged)
from .. import patchfile
from ..patchfile import ModulePatch, Patch
from . import _activeness
from ._state import (_Record, _applied, _raise_os_failure, _register_source, _unless_exhausted,
                     running_as_main)


def _loaded(patch: Patch) -> Dict[str, types.ModuleType]:
    """The modules of ``patch`` in sys.modules now: the apply's one look at them.

    Not one still executing its import in another thread (``__spec__._initializing``):
    its body has not bound everything yet, and what it binds after a patch would be the
    baseline's again (the apply said "applied" over code that ran v1). Such a module is
    pending: patched when its import ends (the hook), or at the engine's next look
    (``_imported_meanwhile``: the end of this apply, ``status``)."""
    out: Dict[str, types.ModuleType] = {}
    for mp in patch.modules:
        module = sys.modules.get(mp.name)
        if module is None and mp.action != "add":
            module = running_as_main(mp.name)
        if module is not None and not importing(module):
            out[mp.name] = module
    return out


# -- scripts: a patch module that runs here as __main__ ------------------------------
#
# `python app.py` runs app.py as ``__main__``; a patch built from old/app.py and
# new/app.py names the module ``app``, which nothing imports. Left "pending import", the
# script would run the vulnerable code under an "applied" record (issue 16). So a module
# of the patch that is not imported is resolved to ``__main__`` when ``__main__`` runs
# its file: ``python -m pkg.mod`` by its spec's name; ``python app.py`` (no spec, or the
# spec of a directory/zip run, named ``__main__``) by the end of its path, ``app.py`` for
# ``app`` and ``pkg/mod.py`` for ``pkg.mod``. The path says only which file; whether it
# runs the baseline is checked as for any module, and more strictly (prepare's
# ``_script_checks``: the running top-level code must be the baseline's). The record
# keeps the patch's name (``app``: "applied"), with a note that it is __main__.
# Rejected: renaming the module to ``__main__`` in the patch (the state manifest, the
# replaced-patch check and the status rows all key on the patch's own names).
# Not covered: a later ``import app`` by name loads the file a second time, as another
# module, which the record (``app``: applied) does not serve; docs/engine.md says so.
# (running_as_main and live_module live in _state: post, revert, migrations and hooks
# find the module by the patch's name through live_module.)

def script_of(name: str) -> Optional[types.ModuleType]:
    """``running_as_main(name)``; else ``__main__`` while its script has not started (it
    may turn out to run ``name``'s file): what the apply's watcher waits for."""
    found = running_as_main(name)
    main = sys.modules.get("__main__")
    if found is None and name not in sys.modules and main is not None \
            and not _started(main):
        return main
    return found


# An agent started with the interpreter (``suture run``, the store) applies before the
# script's body runs, or while it runs its first lines: then ``__main__`` has no
# ``__file__`` yet, or its functions are not all defined (run-pre matching would find a
# changed function missing and refuse). Such a script is "importing": its modules stay
# pending, and the apply's watcher (engine._finish_importing) patches them once its top
# level has passed its last ``def``/``class`` (or reached its main block).
_DEFS_END: Dict[str, int] = {}   # script file -> the line its top level is past, once read


def _started(main: types.ModuleType) -> bool:
    if "__file__" in vars(main):
        return True
    # `python -c`, `python -`, the REPL or an embedding never set __file__
    return not (sys.argv and sys.argv[0] not in ("", "-c", "-"))


def script_starting(module: types.ModuleType) -> bool:
    """Whether the script running as ``module`` (``__main__``) has not yet defined what its
    top level defines."""
    if not _started(module):
        return True
    file = vars(module).get("__file__")
    frame = main_frame(module)
    if frame is None or not isinstance(file, str):
        return False
    end = _DEFS_END.get(file)
    if end is None:
        text = _file_text(module)
        try:
            body = ast.parse(text).body if text is not None else []
        except (SyntaxError, ValueError):
            body = []
        guards = set(main_guards(ast.Module(body=body, type_ignores=[])))
        end = 0
        for st in body:
            if ast.dump(st) in guards:
                end = st.lineno - 1
                break
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                end = getattr(st, "end_lineno", None) or st.lineno
        _DEFS_END[file] = end
    return frame.f_lineno <= end


def main_frame(module: types.ModuleType) -> Optional[types.FrameType]:
    """The frame running ``module``'s top level (the bottom of the main thread's stack),
    or None when it is not running (``python -i`` after the script ended)."""
    main = threading.main_thread().ident
    frame = _activeness.thread_frames().get(main) if main is not None else None
    found = None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is module.__dict__:
            found = frame
        frame = frame.f_back
    return found


def main_guards(tree: Any) -> List[str]:
    """The top-level ``if __name__ == "__main__":`` statements of a module's tree, dumped
    (what a script runs at start and an import by name skips; the builder reports them)."""
    name = ast.dump(ast.Name(id="__name__", ctx=ast.Load()))
    main = ast.dump(ast.Constant(value="__main__"))
    return [ast.dump(st) for st in tree.body
            if isinstance(st, ast.If) and isinstance(st.test, ast.Compare)
            and len(st.test.ops) == 1 and isinstance(st.test.ops[0], ast.Eq)
            and {ast.dump(st.test.left), ast.dump(st.test.comparators[0])} == {name, main}]


def is_main(module: Any) -> bool:
    """Whether ``module`` is the one running as ``__main__`` (a script, ``python -m``)."""
    return module is not None and module is sys.modules.get("__main__")


def importing(module: Any) -> bool:
    """Whether ``module`` is still executing its import (in some thread), or is a script
    whose top level has not yet defined what it defines (``script_starting``)."""
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        return True
    return is_main(module) and script_starting(module)


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
            elif c.verdict == "hook" and patch.hooks is None \
                    and (c.kind, c.qualname) not in derived(patch, mp.name):
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


def derived(patch: Patch, module: str) -> Set[Tuple[str, str]]:
    """The (kind, qualname) of ``module``'s changes that would need a hook, whose effect
    the builder showed the state check derives (``meta.state``'s ``derived``: a dry run of
    the patch, without a hook, left a fresh process of the baseline equal, whole, to a
    fresh import of the fixed release). Only for a module whose state is verified (there
    the engine derives what differs after the commit and refuses what it cannot), and for
    a program module (``pkg/__main__.py``), whose module-level code a patch never runs."""
    state = patch.meta.get("state")
    entry = state.get("modules", {}).get(module) if isinstance(state, dict) else None
    program = module == "__main__" or module.endswith(".__main__")   # build.is_program
    if not isinstance(entry, dict) or not (entry.get("verified") or program):
        return set()
    return {(str(kind), str(qual)) for kind, qual in entry.get("derived") or ()
            if qual == "<module>"}   # module-level code only (build_trees)


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
    if is_main(module):
        raise ScriptChanged(
            f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} runs here as "
            f"__main__ (the script {getattr(module, '__file__', None)}), and that file is "
            f"neither the baseline (sha256 {mp.baseline.sha256[:12]}\u2026) nor the fixed "
            "version: it changed on disk since the script started, or another version of the "
            "script runs. This patch carries only the changed lines, so the running code "
            "cannot be checked against the baseline. Nothing was changed. Rebuild the patch "
            "from the version the script runs, or with `suture build --embed-sources` (the "
            "running code itself is then checked), or restart the script.",
            details={"module": mp.name, "main": True, "file": getattr(module, "__file__", None),
                     "baseline_sha256": mp.baseline.sha256, "first": None})
    releases, known = releases_note(patch, module)
    raise BaselineMismatch(
        f"Refused patch {patch.short_id} ({patch.describe()}): {mp.name} does not match the "
        f"baseline: its source file ({getattr(module, '__file__', None) or 'none'}) is neither "
        f"the baseline (sha256 {mp.baseline.sha256[:12]}\u2026) nor the fixed version, and "
        "this patch carries only the changed lines, so the running code cannot be checked "
        f"against the baseline.{releases} Nothing was changed. If another version was "
        "installed under the running process, rebuild the patch with `suture build "
        "--embed-sources`, which carries the whole baseline.",
        details={"module": mp.name, "baseline_sha256": mp.baseline.sha256, "first": None,
                 **known})


def releases_note(patch: Patch, module: types.ModuleType) -> Tuple[str, Dict[str, Any]]:
    """For SUT-E201: the patch's baseline release and the one this process runs (``_members
    .running_release``), as a sentence (with a leading space) and as details; nothing when
    the patch names no distribution (built from two source trees)."""
    t = patch.target
    if t.get("kind") != "distribution" or not t.get("from_version"):
        return "", {}
    name, base = str(t.get("name")), str(t["from_version"])
    running, how = _members.running_release(name, module)
    details: Dict[str, Any] = {"baseline_version": base, "running_version": running}
    if running is None:
        return (f" The patch's baseline is {name} {base}; which release of {name} this "
                f"process runs is not known (no __version__, no installed metadata).", details)
    if running != base:
        return (f" The patch's baseline is {name} {base}; this process runs {name} {running} "
                f"({how}): it needs a patch built from {name} {running}.", details)
    return (f" The patch's baseline is {name} {base}, and this process has {name} {running} "
            f"({how}), yet its code differs: its files were changed, or the module is "
            f"another copy.", details)


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
