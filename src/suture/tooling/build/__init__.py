"""Build a hotpatch from two versions of a package: classify, refuse or write.

The definition-level diff lives in ``suture.runtime._defs`` so that the engine
re-derives exactly the same plan from the patch's sources at apply time; this
module adds what only the outside can see: whole files (added and removed
modules, native extensions, data), the target's identity, and the decision to
refuse.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ... import __version__
from ...runtime import _defs
from ...runtime.engine.check import main_guards
from ...runtime.errors import SutureError
from ...runtime.patchfile import (Change, ModulePatch, Patch, Source, compacted, decode_source,
                                 dump, load)
from . import objects as _objects
from . import state as _state
from .sources import Progress, SourceTree, materialize

NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
IGNORED_SUFFIXES = (".pyi", "py.typed")
EXIT_RESTART = 3
EXIT_NEEDS_HOOK = 4


class NothingToPatch(SutureError, ValueError):
    """OLD and NEW hold the same modules and files: a patch would change nothing."""

    code = "SUT-E505"


class BuildRefused(SutureError):
    """The builder refused: some change cannot be hotpatched (as given)."""

    code = "SUT-E203"

    def __init__(self, message: str, *, exit_code: int, report: "BuildReport") -> None:
        super().__init__(message, details={"exit_code": exit_code})
        self.exit_code = exit_code
        if exit_code == EXIT_NEEDS_HOOK:
            self.code = "SUT-E204"
        self.report = report


@dataclass
class ModuleEntry:
    name: str
    status: str                      # changed | added | removed
    changes: List[_defs.Change] = field(default_factory=list)
    baseline: Optional[str] = None
    fixed: Optional[str] = None


@dataclass
class BuildReport:
    target: Dict[str, Any]
    modules: List[ModuleEntry]
    files: List[Dict[str, str]]
    meta: Dict[str, Any]
    patch: Optional[Patch] = None
    data: Optional[bytes] = None
    excluded: List[str] = field(default_factory=list)
    state: Optional[Dict[str, Any]] = None
    """``meta["state"]``, the state manifest (build/state.py); None when refused."""
    dry_run: Optional[Dict[str, Any]] = None
    """The patch applied to a fresh process of the baseline (build/state.py ``dry_run``);
    None when the releases were not imported."""
    partial_offer: Optional[Dict[str, Any]] = None
    """When refused for a restart: what ``--allow-restart`` would build (``partial_offer``)."""

    def changes(self) -> List[Dict[str, str]]:
        rows = [{"module": m.name, "kind": c.kind, "qualname": c.qualname,
                 "verdict": c.verdict, "reason": c.reason}
                for m in self.modules for c in m.changes]
        rows += [{"module": "", "kind": f["kind"], "qualname": f["path"],
                  "verdict": f["verdict"], "reason": f["reason"]} for f in self.files]
        return rows

    def migration_stub(self) -> Optional[str]:
        """A hook module to fill in, when some instance state needs a migration that the
        patch's hooks do not name (``objects.stub``); None otherwise."""
        hooks = self.patch.hooks.text if self.patch and self.patch.hooks else None
        missing = _objects.needs_migration(_objects.rows(self.changes(), self.meta),
                                           _objects.migration_tables(hooks))
        return _objects.stub(missing) if missing else None

    def scripts(self) -> List[str]:
        """What a process running a changed module as a script (``__main__``) gets: one
        line per changed module that has an ``if __name__ == "__main__":`` block, or is a
        program module (docs/engine.md, "Scripts (__main__)")."""
        return [line for m in self.modules if m.status == "changed"
                for line in script_notes(m)]

    def blockers(self, verdict: str) -> List[Dict[str, str]]:
        return [c for c in self.changes() if c["verdict"] == verdict]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.patch.id if self.patch else None,
            "target": self.target, "meta": self.meta,
            "changes": self.changes(),
            "excluded_modules": self.excluded,
            "state": self.state,
            "dry_run": self.dry_run,
            "partial_offer": self.partial_offer,
            "scripts": self.scripts(),
            "objects": _objects.rows(self.changes(), self.meta),
            "migration_stub": self.migration_stub(),
            "refused": self.patch is None,
            "size": len(self.data) if self.data else 0,
        }


def build(old: str, new: str, *, cves: Sequence[str] = (), summary: str = "",
          hooks: Optional[Path] = None, allow_restart: bool = False,
          cache_dir: Optional[Path] = None, find_links: Sequence[str] = (),
          index_url: Optional[str] = None, no_index: bool = False,
          embed_sources: bool = False, verify_state: bool = True, dry_run: bool = False,
          import_path: Sequence[str] = (),
          import_env: Optional[Mapping[str, str]] = None,
          import_python: Optional[str] = None, progress: Progress = None) -> BuildReport:
    """Materialise OLD and NEW (dir, wheel, sdist or name==version) and build.

    Two releases with the same modules and files are refused (``NothingToPatch``): an
    empty patch written with success looks like a fix that ships nothing, and is most
    often the same version given twice. ``progress`` is told each slow step."""
    kw = dict(cache_dir=cache_dir, find_links=find_links, index_url=index_url,
              no_index=no_index, progress=progress)
    old_tree = materialize(old, **kw)  # type: ignore[arg-type]
    new_tree = materialize(new, **kw)  # type: ignore[arg-type]
    return build_trees(old_tree, new_tree, cves=cves,
                       summary=summary, hooks=hooks, allow_restart=allow_restart,
                       embed_sources=embed_sources, verify_state=verify_state,
                       dry_run=dry_run, import_path=import_path, import_env=import_env,
                       import_python=import_python, progress=progress, refuse_empty=True)


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _label(tree: SourceTree) -> str:
    return f"{tree.name} {tree.version}" if tree.name and tree.version else tree.origin


def build_trees(old: SourceTree, new: SourceTree, *, cves: Sequence[str] = (),
                summary: str = "", hooks: Optional[Path] = None,
                allow_restart: bool = False, refuse: bool = True,
                embed_sources: bool = False, verify_state: bool = True,
                dry_run: bool = False, import_path: Sequence[str] = (),
                import_env: Optional[Mapping[str, str]] = None,
                import_python: Optional[str] = None,
                progress: Progress = None, refuse_empty: bool = False) -> BuildReport:
    """Diff two trees into a report and, unless refused, a patch.

    A changed module travels compact (its baseline's hash and the changed lines;
    the engine rebuilds both sources from the target's own file) unless
    ``embed_sources``, which carries both sources whole (docs/patch-format.md).

    ``refuse=False`` writes the patch whatever the verdicts: only tests use it,
    to prove that the engine refuses on its own (defence in depth).

    ``verify_state`` imports both releases in fresh interpreters (their import-time code
    runs here) to record the state manifest, ``meta["state"]`` (build/state.py), with
    ``import_path`` after each release's root on ``sys.path`` and ``import_env`` in the
    environment; without it every changed module is recorded as not verified.
    ``import_python`` is the interpreter they are imported with (default: this one):
    that of the processes the patch is for, whose standard library computes some of the
    import-time values the manifest holds.
    ``dry_run`` then also applies the patch to a fresh process of the baseline and reverts
    it (``report.dry_run``): what ``suture build`` does.
    ``progress`` is told each slow step before it starts. ``refuse_empty`` raises
    ``NothingToPatch`` when the trees hold the same modules and files (``build``, the
    command's path, asks for it; other callers get the empty patch they asked for).
    """
    with _state.importing_with(import_python):
        return _build_trees(old, new, cves=cves, summary=summary, hooks=hooks,
                            allow_restart=allow_restart, refuse=refuse,
                            embed_sources=embed_sources, verify_state=verify_state,
                            dry_run=dry_run, import_path=import_path, import_env=import_env,
                            progress=progress, refuse_empty=refuse_empty)


def _build_trees(old: SourceTree, new: SourceTree, *, cves: Sequence[str], summary: str,
                 hooks: Optional[Path], allow_restart: bool, refuse: bool,
                 embed_sources: bool, verify_state: bool, dry_run: bool,
                 import_path: Sequence[str],
                 import_env: Optional[Mapping[str, str]],
                 progress: Progress = None, refuse_empty: bool = False) -> BuildReport:
    _say(progress, f"diffing {_label(old)} and {_label(new)}")
    report = diff_trees(old, new, cves=cves, summary=summary, hooks=hooks)
    if refuse_empty and not report.modules and not report.files:
        raise NothingToPatch(
            f"nothing to patch: {_label(old)} ({old.root}) and {_label(new)} ({new.root}) "
            "hold the same modules and files, so the patch would change nothing. Give the "
            "vulnerable release first and the fixed one second. No patch was written",
            details={"old": old.origin, "new": new.origin})
    # Unchanged modules that import a changed one: imported with it at build, so the state
    # they built from it is in the manifest (issue 15, "State manifest (build side)").
    graph = _import_graph(old, new) if verify_state else {}
    early_deps = _dependents(old, new, [m.name for m in report.modules
                                        if m.status == "changed" and not is_program(m.name)],
                             graph=graph)
    if verify_state:
        _say(progress, "importing both releases in fresh interpreters to record the module "
                       "state the fix changes")
    early_state = _read_at_import(report, old, new, import_path, import_env,
                                  extra=early_deps[0]) if verify_state else None
    restart = report.blockers("restart")
    need_hook = report.blockers("hook") if hooks is None else []
    if refuse and restart and not allow_restart:
        offer = report.partial_offer = partial_offer(report, new.modules())
        raise BuildRefused(
            "Cannot build a live patch: " + "; ".join(_blocker(c) for c in restart)
            + ". These changes need a restart. Deploy the new version with a restart, or "
            "pass --allow-restart to build a partial patch without the modules they touch"
            + _offer_text(offer) + ".", exit_code=EXIT_RESTART, report=report)
    # With the releases imported, module-level code that needs a hook may not: where a
    # dry run shows that the state check derives its effect (``_derive_or_refuse``), it
    # is not refused. Only module-level code: its whole effect is in what a fresh process
    # holds. A field added to a class (objects made before the patch lack it), a class
    # decorator or class-body code act on objects no fresh import has.
    derivable = verify_state and all(c["module"] and c["qualname"] == "<module>"
                                     for c in need_hook)
    if refuse and need_hook and not derivable:
        raise BuildRefused(
            "Cannot build a live patch without a hook: " + "; ".join(_blocker(c) for c in need_hook)
            + ". Write a hook module that performs these changes (see docs/engine.md, Hooks) "
            "and pass it with --hooks FILE.", exit_code=EXIT_NEEDS_HOOK, report=report)
    modules = report.modules
    if refuse and restart:
        bad = {c["module"] for c in restart if c["module"]}
        report.excluded = sorted(bad)
        modules = [m for m in modules if m.name not in bad]
        report.meta["partial"] = True
        report.meta["excluded"] = report.excluded + [c["qualname"] for c in restart
                                                     if not c["module"]]
    whole = [ModulePatch(m.name, "add" if m.status == "added" else "change",
                         None if m.status == "added" else Source.of(m.baseline or ""),
                         Source.of(m.fixed or ""),
                         tuple(Change(c.kind, c.qualname, c.verdict, c.reason) for c in m.changes))
             for m in modules if m.status != "removed"]
    changed = [m.name for m in whole if m.action == "change"]
    # A __main__ module is a program: importing it runs it (gunicorn's starts a server).
    scripts = [n for n in changed if is_program(n)]
    changed = [n for n in changed if n not in scripts]
    deps, left_out = _dependents(old, new, changed, graph=graph) if verify_state else ([], 0)
    if early_state is not None and sorted(early_state["modules"]) == sorted(changed + deps):
        report.state = early_state
    elif verify_state:
        _say(progress, "importing both releases again with the modules that import the "
                       "changed ones")
        report.state = _state.manifest(old.root, new.root, changed, dependents=deps,
                                       skip_globals=_copies(new, deps),
                                       import_path=import_path, import_env=import_env)
    else:
        report.state = _state.not_imported(changed)
    if deps:
        carried = _carry_dependents(report, old, new, deps, left_out)
        whole += [ModulePatch(m.name, "change", Source.of(m.baseline or ""),
                              Source.of(m.fixed or ""), ()) for m in carried]
        changed += [m.name for m in carried]
    report.state["modules"].update(_state.not_imported(
        scripts, "a __main__ module is a program: importing it at build would run it")
        ["modules"])
    derive = {m: [[c["kind"], c["qualname"]] for c in need_hook if c["module"] == m]
              for m in sorted({c["module"] for c in need_hook})} if refuse else {}
    for name, pairs in derive.items():
        entry = report.state["modules"].get(name)
        if isinstance(entry, dict) and (entry.get("verified") or is_program(name)):
            entry["derived"] = pairs
    report.meta["state"] = report.state
    patch = Patch(
        target=report.target,
        modules=tuple(whole if embed_sources else map(compacted, whole)),
        meta=report.meta,
        # removed modules travel with the files, so the engine sees their verdicts too
        files=tuple(report.files) + tuple(
            {"path": m.name, "kind": c.kind, "verdict": c.verdict, "reason": c.reason}
            for m in report.modules if m.status == "removed" for c in m.changes),
        hooks=Source.of(Path(hooks).read_text(encoding="utf-8")) if hooks else None,
    )
    _say(progress, "compiling and writing the patch")
    data = dump(patch)
    report.patch = load(data)
    report.data = data
    if derive:
        _derive_or_refuse(report, old, new, data, changed, need_hook, import_path, import_env,
                          progress)
    if report.dry_run is not None or not (verify_state and dry_run):
        pass
    elif hooks is None:
        # What every process of the baseline will answer (issue 15): known here, before
        # the patch ships. A fixed module that imports in a fresh interpreter may still
        # fail to evaluate in a patched one (a new name read by a generator that runs
        # too early), or not reach the fixed state.
        _say(progress, "dry run: applying the patch to a fresh process of the baseline "
                       "and reverting it")
        report.dry_run = _state.dry_run(old.root, data, changed, new_root=new.root,
                                        import_path=import_path,
                                        import_env=import_env)
    else:
        # A hook is the patch author's code with effects of its own (files, services): it
        # runs in the processes the patch is applied to, not on the build machine.
        report.dry_run = {"outcome": "not run",
                          "reason": "the patch carries hooks; they run only where it is applied"}
    return report


def _derive_or_refuse(report: BuildReport, old: SourceTree, new: SourceTree, data: bytes,
                      changed: Sequence[str], need_hook: List[Dict[str, str]],
                      import_path: Sequence[str],
                      import_env: Optional[Mapping[str, str]],
                      progress: Progress = None) -> None:
    """Changes that would need a hook (module-level code with effects: a registration
    moved from one class to another, a statement that fills a registry), accepted without
    one when the state check derives their effect: the patch, applied without a hook to a
    fresh process of the baseline, must leave that *whole* process (every module, not
    only the patched ones) equal to a fresh import of the fixed release, and its revert
    must leave it as it was. Otherwise the build is refused as needing a hook, with what
    the dry run found. Accepted changes are reported as caveats."""
    state = report.state or {}
    # A program module's own code (``pkg/__main__.py``) runs as ``__main__`` under
    # ``python -m pkg``, which no patch reaches; imported by name, its module-level code
    # ran at import and is the program itself. What its module-level statements do is not
    # state a patch can give a running process either way: such changes are caveats.
    unverified = sorted({c["module"] for c in need_hook if not is_program(c["module"])
                         and not state["modules"].get(c["module"], {}).get("verified")})
    why = ""
    if all(is_program(c["module"]) for c in need_hook):
        pass   # nothing a dry run could show
    elif unverified:
        why = "; ".join(f"the state of {m} is not verified ("
                        f"{state['modules'].get(m, {}).get('reason', 'not imported')})"
                        for m in unverified)
    else:
        _say(progress, "dry run without a hook: applying the patch to a fresh process of "
                       "the baseline")
        dry = report.dry_run = _state.dry_run(old.root, data, changed, new_root=new.root,
                                              import_path=import_path, import_env=import_env)
        differs = dry.get("differs") or {}
        reverted = dry.get("revert_differs") or {}
        if dry.get("outcome") != "applied":
            why = (f"a dry run without a hook was {dry.get('outcome')}"
                   f"{' ' + str(dry['code']) if dry.get('code') else ''}: "
                   f"{dry.get('reason', '')}".rstrip(": "))
        elif dry.get("differs_unknown") or "total" not in differs:
            why = ("the dry run could not compare the whole process with a fresh import: "
                   + str(dry.get("differs_unknown") or "not compared"))
        elif differs["total"] or reverted.get("total"):
            bad = differs if differs["total"] else reverted
            what = ("a fresh import of the fixed release" if bad is differs
                    else "the process before the apply")
            shown = "; ".join(f"{d['module']}: {d['path'] or '(module)'} is {d['got']}, "
                              f"expected {d['want']}" for d in bad["paths"][:3])
            why = (f"after a dry run without a hook, {bad['total']} path(s) of the process "
                   f"differ from {what} ({shown})")
    if why:
        report.patch = report.data = None   # not written: the report says refused
        raise BuildRefused(
            "Cannot build a live patch without a hook: "
            + "; ".join(_blocker(c) for c in need_hook)
            + f". Their effect could not be derived: {why.rstrip('.')}. Write a hook module that "
            "performs these changes (see docs/engine.md, Hooks) and pass it with --hooks FILE.",
            exit_code=EXIT_NEEDS_HOOK, report=report)
    hooked = {(c["module"], c["kind"], c["qualname"]) for c in need_hook}
    for m in report.modules:
        said = (PROGRAM_REASON if is_program(m.name) else
                "its effect is derived from a fresh import of the fixed release: a dry run "
                "at build left the whole process equal to one, and the state check verifies "
                "it at every apply")
        m.changes = [dataclasses.replace(
            c, verdict="caveat", reason=(c.reason[:c.reason.index("`", 1) + 1] + ": "
                                         if c.reason.startswith("`") and "`" in c.reason[1:]
                                         else "") + said)
            if (m.name, c.kind, c.qualname) in hooked else c for c in m.changes]


def script_notes(m: ModuleEntry) -> List[str]:
    """Where the engine will refuse a process that runs ``m`` as its script (SUT-E213;
    engine/prepare.py ``_script_checks``), said at build: a change to its ``if __name__ ==
    "__main__":`` block, which a patch never runs, and changed functions that block calls
    (one that runs the script's loop never returns, so it cannot get the fix)."""
    try:
        old, new = ast.parse(m.baseline or ""), ast.parse(m.fixed or "")
    except SyntaxError:
        return []
    guards = [main_guards(old), main_guards(new)]
    if not any(guards) and not is_program(m.name):
        return []
    if m.name == "__main__":
        as_script = "a process running it as its program (`python __main__.py`, `python DIR`)"
    elif is_program(m.name):
        as_script = f"a process running it as its program (`python -m {m.name[:-9]}`)"
    else:
        as_script = (f"a process running {m.name} as a script (`python "
                     f"{m.name.replace('.', '/')}.py`, `python -m {m.name}`)")
    if guards[0] != guards[1]:
        return [f"{m.name}: its `if __name__ == \"__main__\":` block changes; it ran when the "
                f"script started and a patch does not run it again: {as_script} cannot get "
                "this patch (apply refuses there, SUT-E213); restart such processes"]
    changed = {c.qualname for c in m.changes}
    called = sorted({n.func.id for st in new.body if ast.dump(st) in guards[1]
                     for n in ast.walk(st) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Name) and n.func.id in changed})
    if called:
        return [f"{m.name}: {', '.join(called)} changes and its `if __name__ == "
                f"\"__main__\":` block calls it: if it runs the script's loop (never "
                f"returns), {as_script} cannot get this patch (apply refuses there after 2 s, "
                "SUT-E213); otherwise it is patched as __main__"]
    return [f"{m.name}: {as_script} is patched as __main__ (matched by its path or "
            "`-m` name, checked against the baseline)"]


PROGRAM_REASON = ("module-level code of a program module: it runs when the package is run "
                  "as a program (`python -m`), as __main__, which a live patch does not "
                  "reach (a restart runs the fixed program); a process that imported it by "
                  "name ran it at import, as the program itself: not re-run")


def is_program(module: str) -> bool:
    """``__main__`` or ``pkg.__main__``: a program's entry, not a library module."""
    return module == "__main__" or module.endswith(".__main__")


def partial_offer(report: BuildReport, paths: Mapping[str, Path]) -> Dict[str, Any]:
    """What ``--allow-restart`` would build: the modules it leaves out (their changes need a
    restart), the changed modules it keeps, and, per kept module, the names its changed or
    added functions read that it takes from a module left out (``depends``: a fixed
    function that calls into a left-out module runs against its *old* code there). Read
    from the fixed sources, statically."""
    restart = report.blockers("restart")
    out_mods = sorted({c["module"] for c in restart if c["module"]})
    files = sorted(c["qualname"] for c in restart if not c["module"])
    kept = [m for m in report.modules if m.name not in out_mods and m.status != "removed"]
    depends: Dict[str, List[str]] = {}
    for m in kept:
        try:
            tree = ast.parse(m.fixed or "")
        except SyntaxError:
            continue
        path = paths.get(m.name)
        package = m.name if path is not None and Path(path).name == "__init__.py" \
            else m.name.rpartition(".")[0]
        taken = _names_from(tree, m.name, package, out_mods)
        changed = {c.qualname for c in m.changes if c.verdict != "restart"}
        used: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    q == node.name or q.endswith("." + node.name) for q in changed):
                used |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        hits = sorted(f"{name} (from {taken[name]})" for name in used & set(taken))
        if hits:
            depends[m.name] = hits
    return {"leave_out": out_mods, "files": files, "keep": [m.name for m in kept],
            "depends": depends}


def _names_from(tree: ast.Module, module: str, package: str, wanted: Sequence[str]
                ) -> Dict[str, str]:
    """Names a module binds at its top level from the modules ``wanted`` (``from M import
    x``, ``import M as y``), each with the module."""
    out: Dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".") if package else []
            base = ".".join(parts[:len(parts) - node.level + 1] if node.level else [])
            base = ".".join(p for p in (base, node.module or "") if p)
            for a in node.names:
                for target in (f"{base}.{a.name}", base):
                    if target in wanted:
                        out[a.asname or a.name] = target
                        break
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in wanted:
                    out[a.asname or a.name.split(".")[0]] = a.name
    return out


def _offer_text(offer: Dict[str, Any]) -> str:
    if not offer["keep"]:
        return " (nothing would be left to patch)"
    left = ", ".join(offer["leave_out"] + offer["files"]) or "nothing"
    text = f" (it would leave out {left} and patch {', '.join(offer['keep'])}"
    if offer["depends"]:
        text += ("; WARNING: its fixed functions use what it leaves out, which keeps running "
                 "the old code: " + "; ".join(f"{m}: {', '.join(v)}"
                                             for m, v in offer["depends"].items()))
    else:
        text += "; the fixed functions it keeps use nothing from what it leaves out"
    return text + ")"


def _blocker(c: Dict[str, str]) -> str:
    where = f"{c['module']}:{c['qualname']}" if c["module"] else c["qualname"]
    return f"{c['kind']} {where} ({c['reason']})"


def diff_trees(old: SourceTree, new: SourceTree, *, cves: Sequence[str] = (),
               summary: str = "", hooks: Optional[Path] = None) -> BuildReport:
    old_mods, new_mods = old.modules(), new.modules()
    entries: List[ModuleEntry] = []
    for name in sorted(set(old_mods) | set(new_mods)):
        if name not in new_mods:
            user = _importer(name, new_mods)
            entries.append(ModuleEntry(name, "removed", [_defs.Change(
                "removed module", "", "restart",
                f"the fixed version still refers to it ({user}), and the running module "
                "cannot be unloaded safely") if user else _defs.Change(
                "removed module", "", "caveat",
                "nothing in the fixed version imports or names it: a process that loaded it "
                "keeps it as it is (not patched)")]))
            continue
        fixed = _read(new_mods[name])
        if name not in old_mods:
            entries.append(ModuleEntry(name, "added", _defs.added_module_plan(fixed).changes,
                                       fixed=fixed))
            continue
        baseline = _read(old_mods[name])
        if baseline == fixed:
            continue
        plan = _defs.diff_module(baseline, fixed, name)
        entries.append(ModuleEntry(name, "changed", plan.changes, baseline, fixed))
    files = _diff_files(old.other_files(), new.other_files())
    target: Dict[str, Any]
    if old.name and new.name and old.version and new.version:
        target = {"kind": "distribution", "name": new.name,
                  "from_version": old.version, "to_version": new.version}
    else:
        tops = sorted({m.split(".")[0] for m in new_mods})
        target = {"kind": "tree", "name": new.name or (tops[0] if len(tops) == 1 else
                                                         Path(new.root).name),
                  "from_version": old.version, "to_version": new.version}
    meta = {"cves": sorted(cves), "summary": summary, "builder": f"suture {__version__}",
            "python": ">=3.9", "partial": False}
    frames = _objects.cross_module(entries, new_mods)
    if frames:
        meta["call_hazards"] = frames   # shown by inspect; the engine derives them again
    return BuildReport(target=target, modules=entries, files=files, meta=meta)


def _importer(name: str, mods: Dict[str, Path]) -> str:
    """A module of ``mods`` that imports ``name`` (or, in the same package, names it in a
    string: ``__import__``, vendoring tables), as "module: how"; '' if none does."""
    top, last = name.split(".")[0], name.rsplit(".", 1)[-1]

    def hit(target: str) -> bool:
        return (target == name or target.startswith(name + ".")
                or target.split(".")[0] == top and target.rsplit(".", 1)[-1] == last)
    for mod, path in sorted(mods.items()):
        try:
            tree = ast.parse(_read(path))
        except SyntaxError:
            return f"{mod}: cannot be parsed"
        package = mod if Path(path).name == "__init__.py" else mod.rpartition(".")[0]
        for node in _live_nodes(tree):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = package.split(".") if package else []
                base = ".".join(parts[:len(parts) - node.level + 1] if node.level else [])
                base = ".".join(p for p in (base, node.module or "") if p)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and mod.split(".")[0] == top and node.value in (name, last):
                return f"{mod}: the string {node.value!r}"
            for t in targets:
                if hit(t):
                    return f"{mod}: import {t}"
    return ""


_OLDEST = (3, 9)   # the oldest Python Suture supports: branches only older ones take are dead


def _live_nodes(tree: ast.AST) -> List[ast.AST]:
    """Nodes of ``tree`` outside ``except ImportError:`` fallbacks and outside branches
    that only Pythons older than ``_OLDEST`` take (``if sys.version_info >= (3, 8): ...
    else: <dead>``)."""
    out: List[ast.AST] = []

    def visit(node: ast.AST) -> None:
        out.append(node)
        if isinstance(node, ast.Try):
            for child in [*node.body, *node.orelse, *node.finalbody]:
                visit(child)
            for h in node.handlers:
                names: List[Optional[ast.expr]] = (
                    list(h.type.elts) if isinstance(h.type, ast.Tuple) else [h.type])
                if not all(isinstance(n, ast.Name) and n.id in ("ImportError",
                                                                 "ModuleNotFoundError")
                           for n in names):
                    visit(h)
            return
        if isinstance(node, ast.If):
            taken = _version_test(node.test)
            visit(node.test)
            for child in node.body if taken is not False else ():
                visit(child)
            for child in node.orelse if taken is not True else ():
                visit(child)
            return
        for sub in ast.iter_child_nodes(node):
            visit(sub)
    visit(tree)
    return out


def _version_test(test: ast.expr) -> Optional[bool]:
    """True/False when ``test`` (``sys.version_info >= (3, 8)``, ``<``) has the same answer
    on every supported Python; None when it depends."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.left, ast.Attribute) and test.left.attr == "version_info"
            and isinstance(test.left.value, ast.Name) and test.left.value.id == "sys"):
        return None
    try:
        bound = tuple(ast.literal_eval(test.comparators[0]))
    except (ValueError, TypeError, SyntaxError):
        return None
    if bound > _OLDEST:
        return None
    op = test.ops[0]
    if isinstance(op, (ast.GtE, ast.Gt)):
        return True if bound < _OLDEST or isinstance(op, ast.GtE) else None
    if isinstance(op, (ast.Lt, ast.LtE)):
        return False if bound < _OLDEST or isinstance(op, ast.Lt) else None
    return None


def _read(path: Path) -> str:
    return decode_source(Path(path).read_bytes())   # as the engine reads the target's file


READ_AT_IMPORT_BYTES = 256


def _read_at_import(report: BuildReport, old: SourceTree, new: SourceTree,
                    import_path: Sequence[str], import_env: Optional[Mapping[str, str]],
                    extra: Sequence[str] = ()) -> Optional[Dict[str, Any]]:
    """Small changed data files that the fixed release reads at import into its state (a
    ``VERSION`` file read into ``__version__``): when the file's new text is the fixed
    value of a path of the state manifest, the engine sets that path and the state check
    verifies it, so the file is a caveat, not a restart. Returns the manifest it computed
    (None when no file qualified), for the build to reuse."""
    small = []
    for f in report.files:
        if f["verdict"] != "restart" or f["kind"] != "changed data file":
            continue
        path = new.root / f["path"]
        try:
            if path.stat().st_size <= READ_AT_IMPORT_BYTES:
                small.append((f, path.read_text(encoding="utf-8").strip()))
        except (OSError, UnicodeDecodeError):
            continue
    if not small:
        return None
    changed = sorted(m.name for m in report.modules if m.status not in ("added", "removed")
                     and not is_program(m.name))
    # The modules beside each file may read it without changing themselves.
    old_mods, new_mods = old.modules(), new.modules()
    dirs = {(new.root / f["path"]).parent for f, _ in small}
    readers = sorted(n for n, path in old_mods.items()
                     if path.parent in {old.root / d.relative_to(new.root) for d in dirs}
                     and n not in changed and n in new_mods
                     and not is_program(n)
                     and path.read_bytes() == new_mods[n].read_bytes())
    state = _state.manifest(old.root, new.root, changed + readers, dependents=extra,
                            skip_globals=_copies(new, extra),
                            import_path=import_path, import_env=import_env)
    fixed: Dict[str, str] = {}
    for name, entry in state["modules"].items():
        for p in entry.get("paths", []) if entry.get("verified") else []:
            lit = p.get("literal")
            if isinstance(lit, list) and lit[:1] == ["str"] and p["baseline"] != "absent":
                fixed.setdefault(lit[1].strip(), f"{name}.{p['label']}")
    for f, text in small:
        where = fixed.get(text) if text else None
        reader = next((n for n in readers if where is not None
                       and where.startswith(n + ".")
                       and "." not in where[len(n) + 1:].split("[")[0].rstrip(".")), None)
        if reader is not None and reader not in {m.name for m in report.modules}:
            # carried as a module whose code does not change, for the engine to set the
            # state it read from the file
            text_of = decode_source(old_mods[reader].read_bytes())
            report.modules.append(ModuleEntry(reader, "changed", [], text_of, text_of))
        if where is not None:
            f["verdict"], f["kind"] = "caveat", "changed data file read at import"
            f["reason"] = (f"its new text is what the fixed release holds in {where}: the "
                           "engine sets that and the state check verifies it; code that reads "
                           "the file again at run time reads the file on disk")
    keep = {m.name for m in report.modules if m.status != "removed"} | set(extra)
    state["modules"] = {n: e for n, e in state["modules"].items() if n in keep}
    return state


MAX_DEPENDENTS = 50   # unchanged modules imported and fingerprinted at build, closest first


def _import_graph(old: SourceTree, new: SourceTree) -> Dict[str, Set[str]]:
    """Each unchanged module of ``new`` (the same bytes in both releases, not
    ``__main__``) -> the modules of ``new`` it imports."""
    old_mods, new_mods = old.modules(), new.modules()
    return {n: _imported_modules(n, p, new_mods) for n, p in new_mods.items()
            if n in old_mods and not is_program(n)
            and p.read_bytes() == old_mods[n].read_bytes()}


def _dependents(old: SourceTree, new: SourceTree, changed: Sequence[str],
                limit: Optional[int] = None,
                graph: Optional[Dict[str, Set[str]]] = None) -> Tuple[List[str], int]:
    """Unchanged modules (the same bytes in both releases, not ``__main__``) that import a
    module of ``changed``, directly or through other such modules, read from their import
    statements: at import they may have built state from it (``class P: LIMIT = LIMIT``,
    ``DEFAULT = P()``) that a fresh import of the fixed release builds differently. The
    closest ``limit`` of them, nearest first (then by name), and how many were left out."""
    if not changed:
        return [], 0
    imports = {n: deps for n, deps in (graph if graph is not None
                                       else _import_graph(old, new)).items()
               if n not in changed}
    found: List[str] = []
    frontier, seen = set(changed), set(changed)
    while frontier:
        level = sorted(n for n, deps in imports.items() if n not in seen and deps & frontier)
        found += level
        seen.update(level)
        frontier = set(level)
    limit = MAX_DEPENDENTS if limit is None else limit
    return found[:limit], max(0, len(found) - limit)


def _imported_modules(name: str, path: Path, mods: Mapping[str, Path]) -> Set[str]:
    """The modules of ``mods`` that module ``name`` (file ``path``) imports anywhere in its
    source (outside ``except ImportError:`` fallbacks): ``import a.b`` names ``a`` and
    ``a.b`` (it binds ``a``); ``from p import x`` names ``p.x`` when that is a module, else
    ``p``; relative imports are resolved against the module's package."""
    try:
        tree = ast.parse(_read(path))
    except (SyntaxError, ValueError):
        return set()
    package = name if Path(path).name == "__init__.py" else name.rpartition(".")[0]

    def module_of(target: str) -> Optional[str]:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None
    out: Set[str] = set()
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                out.update(m for m in (module_of(".".join(parts[:i + 1]))
                                       for i in range(len(parts))) if m)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".") if package else []
            if node.level and node.level - 1 > len(parts):
                continue
            base = ".".join(parts[:len(parts) - node.level + 1] if node.level else [])
            base = ".".join(p for p in (base, node.module or "") if p)
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                m = sub if sub in mods else module_of(base)
                if m:
                    out.add(m)
    out.discard(name)
    return out


def _copies(new: SourceTree, deps: Sequence[str]) -> Dict[str, List[str]]:
    """Per dependent, the globals left out of its state: those only ``from M import NAME``
    binds are another module's object, not state the dependent built (``from
    pygments.token import Comment``: a token tree every lexer shares, which grows with the
    lexers loaded; walking it again under each lexer cost 30 times the rest). A changed
    module's constant copied that way is rebound by the engine (``from m import NAME``)."""
    mods = new.modules()
    return {n: sorted(names) for n in deps if n in mods
            for names in [_from_import_names(mods[n])] if names}


def _from_import_names(path: Path) -> Set[str]:
    """Globals of the module at ``path`` bound only by ``from M import NAME`` statements
    (nothing else in its source binds that name)."""
    try:
        tree = ast.parse(_read(path))
    except (SyntaxError, ValueError):
        return set()
    imported: Set[str] = set()
    bound: Set[str] = {n for node in ast.walk(tree) if isinstance(node, ast.Global)
                       for n in node.names}   # set by functions: not only the import's

    def visit(node: ast.AST) -> None:   # the module's own scope: not function/class bodies
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                imported.update((a.asname or a.name) for a in child.names if a.name != "*")
            elif isinstance(child, ast.Import):
                bound.update((a.asname or a.name).split(".")[0] for a in child.names)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(child.name)
                for sub in [*child.decorator_list, *getattr(child, "bases", [])]:
                    visit(sub)
            elif isinstance(child, ast.Lambda):
                continue
            else:
                if isinstance(child, ast.Name) and not isinstance(child.ctx, ast.Load):
                    bound.add(child.id)
                visit(child)
    visit(tree)
    return imported - bound


def _import_statements(tree: ast.AST) -> List[ast.stmt]:
    """The ``import`` statements of ``tree`` at any depth of statements (in functions and
    classes too), outside ``except ImportError:`` fallbacks and branches only Pythons older
    than ``_OLDEST`` take (as ``_live_nodes``); expressions, where no import statement can
    be, are not walked (a lexer's token table is most of its nodes)."""
    out: List[ast.stmt] = []

    def visit(body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If):
                taken = _version_test(node.test)
                visit(node.body if taken is not False else [])
                visit(node.orelse if taken is not True else [])
            elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                visit([*node.body, *node.orelse, *node.finalbody])   # type: ignore[attr-defined]
                for h in node.handlers:   # type: ignore[attr-defined]
                    names = list(h.type.elts) if isinstance(h.type, ast.Tuple) else [h.type]
                    if not all(isinstance(n, ast.Name) and n.id in ("ImportError",
                                                                     "ModuleNotFoundError")
                               for n in names):
                        visit(h.body)
            else:
                for field in ("body", "orelse", "finalbody"):
                    sub = getattr(node, field, None)
                    if isinstance(sub, list):
                        visit(sub)
                for case in getattr(node, "cases", None) or ():
                    visit(case.body)
    visit(getattr(tree, "body", []))
    return out


def _carry_dependents(report: BuildReport, old: SourceTree, new: SourceTree,
                      deps: Sequence[str], left_out: int) -> List[ModuleEntry]:
    """Sort the dependents' manifest entries (``report.state``): one whose own state
    differs between the releases is carried as a module whose code does not change (the
    engine then sets, and the state check verifies, what it built from the changed
    modules); one whose own state does not differ is dropped; one that could not be
    fingerprinted is dropped and named in ``dependents_not_verified``. Its own state
    leaves out the globals that only ``from M import NAME`` binds (``_copies``). Returns
    the entries carried."""
    assert report.state is not None
    old_mods = old.modules()
    carried: List[ModuleEntry] = []
    failed: Dict[str, str] = {}
    for name in deps:
        entry = report.state["modules"].pop(name, None)
        if entry is None:
            continue
        if not entry.get("verified"):
            failed[name] = str(entry.get("reason", "?"))
        elif entry.get("paths"):
            report.state["modules"][name] = entry
            text = _read(old_mods[name])
            carried.append(ModuleEntry(name, "changed", [], text, text))
    report.modules += carried
    if failed:
        report.state["dependents_not_verified"] = failed
    if left_out:
        report.state["dependents_left_out"] = left_out
    return carried


def _diff_files(old: Dict[str, Path], new: Dict[str, Path]) -> List[Dict[str, str]]:
    out = []
    for rel in sorted(set(old) | set(new)):
        a = old.get(rel)
        b = new.get(rel)
        if a is not None and b is not None and a.read_bytes() == b.read_bytes():
            continue
        verb = "removed" if b is None else "added" if a is None else "changed"
        if rel.endswith(IGNORED_SUFFIXES):
            out.append({"path": rel, "kind": f"{verb} non-runtime file", "verdict": "live",
                        "reason": "not loaded by running code"})
        elif rel.endswith(NATIVE_SUFFIXES) or ".cpython-" in rel:
            out.append({"path": rel, "kind": f"{verb} native code", "verdict": "restart",
                        "reason": "compiled extension modules cannot be replaced in a running "
                                  "process"})
        else:
            out.append({"path": rel, "kind": f"{verb} data file", "verdict": "restart",
                        "reason": "the running process may have read it already; new code may "
                                  "expect the new file on disk"})
    return out


python_tag = _state.python_tag
