"""Which distribution a module belongs to: the check behind distribution-restricted keys.

A key in the trust policy may be restricted to some distributions (``suture trust add
K.pub --dist alpha``). The signature only covers what the patch *says* (``target.name
== "alpha"``), and the patch's module names are just names: nothing in the file ties
``beta.core`` to alpha. So the target process, which is the only place where we can
see which files its modules come from, checks every module the patch touches against
the ``RECORD`` of the distribution the patch names (issue 13, finding 3):

* a module already loaded: its file (``__file__``, else its spec's origin), resolved,
  must be a file that the distribution's RECORD lists;
* a module not loaded yet (pending import): the file its name maps to under the
  distribution's root (``a/b.py`` or ``a/b/__init__.py``) must be listed, and when it
  is imported its real file is checked again (``engine.patch_on_import``): what the
  import system finds first may be another file of the same name;
* a module the patch adds: its parent package's directory must hold files of the
  distribution (so a top-level module can never be added under a restriction), and no
  file of another owner may already sit where its name maps to; without a restriction, a
  top-level module may be added where no module of that name exists on ``sys.path``.

Several installed distributions of the same (normalised) name are one owner: their
RECORDs are merged. A distribution whose metadata has no RECORD counts as absent.

Who is checked, and what "absent" means (docs/security.md, "Signed patches"):

* a patch of a distribution installed with metadata here is always checked, whoever
  signed it: a patch that names alpha and changes beta is wrong whatever the key;
* a patch trusted only through keys restricted to its distribution (``restricted``) is
  refused when the distribution has no metadata here (modules from a plain directory
  on sys.path, an editable install whose RECORD lists only a ``.pth``): membership
  cannot be proven, and the restriction is what the operator relied on;
* otherwise (an unrestricted key, ``--allow-unsigned``, the in-process API) a patch
  whose distribution has no metadata here is applied as before, and the result says
  that membership was not checked.

Rejected: comparing the module's top-level name with ``top_level.txt`` (optional,
absent on 3.9-era wheels from some builders, and it says nothing about a module file
that another distribution shipped inside the same package); comparing names with the
distribution's name (``PyYAML`` provides ``yaml``); checking in the tooling only (the
tooling sees its own environment, not the target's, and the import hook runs later).

Stdlib only, like all of ``runtime/``; ``importlib.metadata`` is imported on first use,
under the engine lock (so a fork never happens in the middle of that import).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from .errors import NotInDistribution, UnprovenDistribution
from .patchfile import ModulePatch, Patch

__all__ = ["Owner", "canonical", "find", "check", "check_loaded", "running_release"]


def canonical(name: str) -> str:
    """A distribution name as packaging's ``canonicalize_name`` writes it (PEP 503)."""
    out: List[str] = []
    for ch in name.lower():
        sep = ch in "-_."
        if not (sep and out and out[-1] == "-"):
            out.append("-" if sep else ch)
    return "".join(out)


class Owner:
    """The installed distributions of one name: their roots and every file their RECORDs list."""

    def __init__(self, name: str, versions: Sequence[str], roots: Sequence[str],
                 records: Sequence[str], files: FrozenSet[str]) -> None:
        self.name = name
        self.versions = tuple(versions)
        self.roots = tuple(roots)          # where RECORD paths are relative to (site-packages)
        self.records = tuple(records)      # the metadata directories, for messages
        self.files = files                 # resolved absolute paths
        self.dirs = frozenset(os.path.dirname(f) for f in files)

    def __repr__(self) -> str:
        return f"<Owner {self.name} {', '.join(self.versions)} files={len(self.files)}>"

    def candidates(self, module: str) -> List[str]:
        """Where the source of ``module`` would be under each root, resolved."""
        parts = module.split(".")
        out = []
        for root in self.roots:
            base = os.path.join(root, *parts)
            out += [os.path.realpath(base + ".py"),
                    os.path.realpath(os.path.join(base, "__init__.py"))]
        return out

    def owns_name(self, module: str) -> Optional[str]:
        """The listed file that ``module``'s name maps to, or None."""
        return next((c for c in self.candidates(module) if c in self.files), None)

    def owns_package_of(self, module: str) -> bool:
        """Whether ``module``'s parent package directory holds files of this owner."""
        parts = module.split(".")
        if len(parts) < 2:
            return False
        return any(os.path.realpath(os.path.join(root, *parts[:-1])) in self.dirs
                   for root in self.roots)


def find(name: str) -> Optional[Owner]:
    """The installed distributions named ``name`` (normalised) that have a RECORD, or None."""
    import importlib.metadata as md

    want = canonical(name)
    seen: Dict[str, Any] = {}
    # 3.9's lookup matches the metadata directory's name only after lowercasing and
    # turning "-" into "_" (no "."): ask with the spellings wheels write, then keep only
    # the distributions whose own Name normalises to ours.
    for query in dict.fromkeys((name, want, want.replace("-", "_"))):
        for dist in md.distributions(name=query):
            path = str(getattr(dist, "_path", "")) or repr(dist)
            if path not in seen and canonical(str(dist.metadata["Name"] or "")) == want:
                seen[path] = dist
    versions: List[str] = []
    roots: List[str] = []
    records: List[str] = []
    files: Set[str] = set()
    for path, dist in seen.items():
        listed = dist.files
        if listed is None:      # no RECORD (or installed-files.txt): proves nothing
            continue
        versions.append(str(dist.version))
        records.append(path)
        roots.append(os.path.realpath(str(dist.locate_file(""))))
        files.update(os.path.realpath(str(dist.locate_file(f))) for f in listed)
    if not records:
        return None
    return Owner(want, versions, list(dict.fromkeys(roots)), records, frozenset(files))


def running_release(name: str, module: Any) -> Tuple[Optional[str], str]:
    """Which release of the distribution ``name`` this process runs ``module`` from, for
    messages (SUT-E201 names it beside the patch's baseline): the version and how it was
    known, or ``(None, "")``.

    First the ``__version__`` of the module's top-level package, read from memory: the
    release that was imported, even when another one has been installed over it since.
    Else the installed metadata: the distribution whose RECORD lists the module's file,
    or, when none does (no RECORD), the one installed under that name. Those describe the
    disk now, which is what the process imported unless it was upgraded under it; the
    second string says which it is. Never raises: a broken installation must not turn a
    refusal into a crash, so anything reading it raises is an unknown version."""
    top = sys.modules.get(str(getattr(module, "__name__", "")).split(".")[0])
    version = getattr(top, "__version__", None)
    if isinstance(version, str) and version:
        return version, "its __version__"
    file = _file_of(module)
    try:
        import importlib.metadata as md

        want = canonical(name)
        named: Optional[str] = None
        for query in dict.fromkeys((name, want, want.replace("-", "_"))):
            for dist in md.distributions(name=query):
                if canonical(str(dist.metadata["Name"] or "")) != want:
                    continue
                named = named or str(dist.version)
                listed = dist.files
                if file and listed and os.path.realpath(file) in {
                        os.path.realpath(str(dist.locate_file(f))) for f in listed}:
                    return str(dist.version), "the installed RECORD that lists its file"
        if named is not None:
            return named, "the installed metadata"
    except Exception:  # noqa: BLE001 - see the docstring: for a message only
        pass
    return None, ""


def _file_of(module: Any) -> Optional[str]:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        spec = getattr(module, "__spec__", None)
        file = getattr(spec, "origin", None)
    return file if isinstance(file, str) else None


def _where(name: str, path: Sequence[str]) -> str:
    """The first file on ``path`` that ``name`` maps to (for messages only), or a phrase."""
    parts = name.split(".")
    for entry in path:
        base = os.path.join(entry or ".", *parts)
        for c in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(c):
                return os.path.realpath(c)
    return "no file found on sys.path"


def _stranger(mp: ModulePatch, owner: Owner, modules: Mapping[str, Any],
              path: Sequence[str], restricted: bool = True) -> Optional[Tuple[str, str]]:
    """(module, its file) if ``mp`` is not ``owner``'s; None if it is."""
    loaded = modules.get(mp.name)
    file = _file_of(loaded) if loaded is not None else None
    if mp.action == "add":
        if file is not None and file.startswith("<suture "):
            file = None                     # served from the patch itself (already applied)
        if not restricted and "." not in mp.name and file is None:
            # A key trusted for any patch may add a top-level module (PyYAML 5.4's `_yaml`
            # shim) as long as it takes no module's place on sys.path.
            where = _where(mp.name, path)
            return None if where == "no file found on sys.path" else (mp.name, where)
        if not owner.owns_package_of(mp.name):
            return mp.name, file or "(added by the patch; its package is not the distribution's)"
        taken = [c for c in owner.candidates(mp.name) if os.path.exists(c)
                 and c not in owner.files]
        if taken:
            return mp.name, taken[0]
        if file is not None and os.path.realpath(file) not in owner.files:
            return mp.name, file
        return None
    if loaded is not None:
        if file is not None and os.path.realpath(file) in owner.files:
            return None
        return mp.name, file or "(loaded without a file)"
    if owner.owns_name(mp.name) is not None:
        return None
    return mp.name, _where(mp.name, path)


def check(patch: Patch, restricted: bool, modules: Optional[Mapping[str, Any]] = None,
          path: Optional[Sequence[str]] = None) -> Tuple[Optional[Owner], str]:
    """Check every module ``patch`` touches against the distribution it names.

    Returns the owner (None: not checked) and a note for the result ("" when checked).
    Raises ``NotInDistribution`` naming every module that is not the distribution's (all
    at once), or ``UnprovenDistribution`` when ``restricted`` and membership cannot be
    proven here. ``modules``/``path`` default to this process's sys.modules and sys.path.
    """
    modules = sys.modules if modules is None else modules
    path = sys.path if path is None else path
    t = patch.target
    who = f"patch {patch.short_id} ({patch.describe()})"
    if t.get("kind") != "distribution":
        if restricted:
            raise UnprovenDistribution(
                f"Refused {who}: it is trusted only through keys restricted to distributions, "
                f"but it names no distribution (target kind {t.get('kind')!r}). Nothing was "
                f"changed. Rebuild it from releases of the distribution, or sign it with a key "
                f"trusted for any patch.",
                details={"patch": patch.id, "distribution": None})
        return None, ""
    name = str(t.get("name", ""))
    owner = find(name)
    if owner is None:
        if restricted:
            raise UnprovenDistribution(
                f"Refused {who}: it is trusted only through keys restricted to {canonical(name)}, "
                f"and {name} has no installed metadata with a RECORD in this process, so "
                f"its modules ({', '.join(m.name for m in patch.modules)}) cannot be proven "
                f"to be {name}'s files. Nothing was changed. Install {name} with pip (not "
                f"from a plain directory on sys.path, nor editable), or sign the patch with a "
                f"key trusted for any patch.",
                details={"patch": patch.id, "distribution": canonical(name)})
        return None, (f"{name} has no installed metadata here: the patch's modules were not "
                      f"checked against its RECORD")
    strangers = [s for s in (_stranger(mp, owner, modules, path, restricted)
                             for mp in patch.modules) if s]
    if strangers:
        raise _refusal(patch, owner, strangers)
    return owner, ""


def check_loaded(patch: Patch, owner: Owner, name: str, module: Any) -> None:
    """At import time: the module just imported for ``patch`` must be ``owner``'s file."""
    file = _file_of(module)
    if file is not None and os.path.realpath(file) in owner.files:
        return
    raise _refusal(patch, owner, [(name, file or "(loaded without a file)")])


def _refusal(patch: Patch, owner: Owner, strangers: List[Tuple[str, str]]) -> NotInDistribution:
    listed = "; ".join(f"{m} ({f})" for m, f in strangers)
    return NotInDistribution(
        f"Refused patch {patch.short_id} ({patch.describe()}): it names the distribution "
        f"{owner.name}, but these modules are not files of {owner.name} "
        f"{'/'.join(owner.versions)} (its RECORD, {', '.join(owner.records)}, does not list "
        f"them): {listed}. Nothing was changed. A patch may change only the distribution it "
        f"names (a key trusted for {owner.name} signs nothing else): do not apply this "
        f"patch; ask its publisher.",
        details={"patch": patch.id, "distribution": owner.name,
                 "modules": [{"module": m, "file": f} for m, f in strangers],
                 "records": list(owner.records)})
