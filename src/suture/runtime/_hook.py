"""Meta-path finder: modules imported after apply get the patch too.

Installed while an applied patch has a module pending, added or patched in place, and
removed when none is left; never installed by importing Suture. It declines
(returns None) for every module that is not named by an applied patch, and
never raises for those. Three kinds of module are served:

* pending modules (patched but not yet imported): found by the finders after
  this one, executed by their own loader, then patched before the import
  statement returns, by the engine's entry point that ``refresh`` was given
  (``engine.patch_on_import``);
* modules a patch adds: executed from the patch's source, registered in
  linecache under ``<suture PATCH>/a/b.py`` so tracebacks show their lines;
* modules already patched, when they execute again: ``importlib.reload`` asks the
  meta-path finders with ``target=module`` (IPython's autoreload goes through it too),
  a re-import after ``del sys.modules[name]`` without; either way the file on disk, the
  vulnerable baseline, executes, and the same entry point patches the module again
  before the reload returns (docs/engine.md, "Status verifies the live code; reloads").
  A finder placed before this one, or a loader without ``exec_module``, escapes it:
  ``status()`` then reports the module reverted by the application.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import sys
import threading
import types
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

# Only ever taken inside the engine lock (every refresh() caller holds it), so the
# engine's before-fork hook, which takes the engine lock, also keeps it free at fork.
_state_lock = threading.Lock()
_pending: Dict[str, str] = {}
_added: Dict[str, Tuple[str, str, bool]] = {}
_reexec: Dict[str, str] = {}   # modules patched in place: served when they execute again
# The engine's entry point for a pending module that just executed. The engine hands it
# over with every refresh() rather than this module importing the engine back: the engine
# imports this module, and an import the other way closed a circle (issue 14). Set before
# the finder is first installed, so a pending module never executes without it.
_on_import: Optional[Callable[[str, types.ModuleType], None]] = None


class SutureFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        added = _added.get(fullname)
        if added is not None:
            source, short_id, is_pkg = added
            filename = f"<suture {short_id}>/{fullname.replace('.', '/')}" + (
                "/__init__.py" if is_pkg else ".py")
            loader = _SourceLoader(source, filename)
            # typeshed for 3.15 drops Loader.load_module but still asks for a LoaderProtocol
            # (which has it): the loader is fine, its stub is not.
            return importlib.util.spec_from_loader(fullname, loader, origin=filename,  # type: ignore[arg-type]
                                                   is_package=is_pkg)
        if fullname not in _pending and fullname not in _reexec:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, SutureFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec  # type: ignore[no-any-return]
        return None


class _SourceLoader(importlib.abc.Loader):
    def __init__(self, source: str, filename: str) -> None:
        self.source = source
        self.filename = filename

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        linecache.cache[self.filename] = (len(self.source), None,
                                          self.source.splitlines(True), self.filename)
        module.__file__ = self.filename
        exec(compile(self.source, self.filename, "exec", dont_inherit=True), module.__dict__)

    def get_source(self, fullname: str) -> str:
        return self.source


class _PatchingLoader(importlib.abc.Loader):
    """Wraps the real loader; gives the module back to it once executed."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        # Leave spec.loader alone here: importlib reads it again *after* create_module
        # to call exec_module, so handing the spec back now would skip our exec_module
        # and the module would be imported unpatched (tests/runtime/test_pending_import.py).
        # exec_module gives the module and its spec back to the real loader.
        return self.real.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self.real
        if module.__spec__ is not None:
            module.__spec__.loader = self.real
        self.real.exec_module(module)
        if _on_import is not None:   # always set once a module is pending (refresh)
            _on_import(module.__name__, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


_finder = SutureFinder()


def refresh(pending: Dict[str, str], added: Dict[str, Tuple[str, str, bool]],
            on_import: Callable[[str, types.ModuleType], None],
            applied: Optional[Dict[str, str]] = None) -> None:
    """Serve exactly these modules; install or remove the finder to match.

    ``on_import(name, module)`` is called after a pending module executed, or an
    ``applied`` one executed again: the engine's entry point that patches it.
    """
    global _on_import
    with _state_lock:
        _on_import = on_import
        _pending.clear()
        _pending.update(pending)
        _added.clear()
        _added.update(added)
        _reexec.clear()
        _reexec.update(applied or {})
        installed = _finder in sys.meta_path
        if (_pending or _added or _reexec) and not installed:
            sys.meta_path.insert(0, _finder)
        elif not (_pending or _added or _reexec) and installed:
            sys.meta_path.remove(_finder)


def installed() -> bool:
    return _finder in sys.meta_path
