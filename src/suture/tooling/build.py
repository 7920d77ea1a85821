"""Build a hotpatch from two versions of a package: classify, refuse or write.

The definition-level diff lives in ``suture.runtime._defs`` so that the engine
re-derives exactly the same plan from the patch's sources at apply time; this
module adds what only the outside can see: whole files (added and removed
modules, native extensions, data), the target's identity, and the decision to
refuse.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .. import __version__
from ..runtime import _defs
from ..runtime.errors import SutureError
from ..runtime.patchfile import Change, ModulePatch, Patch, Source, dump, load
from .sources import SourceTree, materialize

NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
IGNORED_SUFFIXES = (".pyi", "py.typed")
EXIT_RESTART = 3
EXIT_NEEDS_HOOK = 4


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

    def changes(self) -> List[Dict[str, str]]:
        rows = [{"module": m.name, "kind": c.kind, "qualname": c.qualname,
                 "verdict": c.verdict, "reason": c.reason}
                for m in self.modules for c in m.changes]
        rows += [{"module": "", "kind": f["kind"], "qualname": f["path"],
                  "verdict": f["verdict"], "reason": f["reason"]} for f in self.files]
        return rows

    def blockers(self, verdict: str) -> List[Dict[str, str]]:
        return [c for c in self.changes() if c["verdict"] == verdict]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.patch.id if self.patch else None,
            "target": self.target, "meta": self.meta,
            "changes": self.changes(),
            "excluded_modules": self.excluded,
            "refused": self.patch is None,
            "size": len(self.data) if self.data else 0,
        }


def build(old: str, new: str, *, cves: Sequence[str] = (), summary: str = "",
          hooks: Optional[Path] = None, allow_restart: bool = False,
          cache_dir: Optional[Path] = None, find_links: Sequence[str] = (),
          index_url: Optional[str] = None, no_index: bool = False) -> BuildReport:
    """Materialise OLD and NEW (dir, wheel, sdist or name==version) and build."""
    kw = dict(cache_dir=cache_dir, find_links=find_links, index_url=index_url, no_index=no_index)
    return build_trees(materialize(old, **kw), materialize(new, **kw), cves=cves,  # type: ignore[arg-type]
                       summary=summary, hooks=hooks, allow_restart=allow_restart)


def build_trees(old: SourceTree, new: SourceTree, *, cves: Sequence[str] = (),
                summary: str = "", hooks: Optional[Path] = None,
                allow_restart: bool = False, refuse: bool = True) -> BuildReport:
    """Diff two trees into a report and, unless refused, a patch.

    ``refuse=False`` writes the patch whatever the verdicts: only tests use it,
    to prove that the engine refuses on its own (defence in depth).
    """
    report = diff_trees(old, new, cves=cves, summary=summary, hooks=hooks)
    restart = report.blockers("restart")
    need_hook = report.blockers("hook") if hooks is None else []
    if refuse and restart and not allow_restart:
        raise BuildRefused(
            "Cannot build a live patch: " + "; ".join(_blocker(c) for c in restart)
            + ". These changes need a restart. Deploy the new version with a restart, or "
            "pass --allow-restart to build a partial patch without the modules they touch.",
            exit_code=EXIT_RESTART, report=report)
    if refuse and need_hook:
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
    patch = Patch(
        target=report.target,
        modules=tuple(
            ModulePatch(m.name, "add" if m.status == "added" else "change",
                        None if m.status == "added" else Source.of(m.baseline or ""),
                        Source.of(m.fixed or ""),
                        tuple(Change(c.kind, c.qualname, c.verdict, c.reason) for c in m.changes))
            for m in modules if m.status != "removed"),
        meta=report.meta,
        files=tuple(report.files),
        hooks=Source.of(Path(hooks).read_text(encoding="utf-8")) if hooks else None,
    )
    data = dump(patch)
    report.patch = load(data)
    report.data = data
    return report


def _blocker(c: Dict[str, str]) -> str:
    where = f"{c['module']}:{c['qualname']}" if c["module"] else c["qualname"]
    return f"{c['kind']} {where} ({c['reason']})"


def diff_trees(old: SourceTree, new: SourceTree, *, cves: Sequence[str] = (),
               summary: str = "", hooks: Optional[Path] = None) -> BuildReport:
    old_mods, new_mods = old.modules(), new.modules()
    entries: List[ModuleEntry] = []
    for name in sorted(set(old_mods) | set(new_mods)):
        if name not in new_mods:
            entries.append(ModuleEntry(name, "removed", [_defs.Change(
                "removed module", "", "restart",
                "code that imports it would fail, and the running module cannot be unloaded "
                "safely")]))
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
    return BuildReport(target=target, modules=entries, files=files, meta=meta)


def _read(path: Path) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


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


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
