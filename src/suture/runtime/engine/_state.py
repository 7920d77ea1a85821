"""The engine's records and the helpers every layer shares; imports no other engine module.

Enters: nothing (the other modules read and fill these records).
Leaves: ``Result`` (what apply/revert did, as data), ``_ModuleTxn`` (one module
prepared, not yet committed), ``_Record`` (an applied patch and its undo log),
``_applied`` (the records in order of application), ``_walks`` (heap walks shared
within one apply), the indexes the import hook serves, ``HookContext`` and shadows.
Also: looking at the application's objects without running its code (``_isa``,
``_own_dict``), and turning an exhausted resource into SUT-E640 (``_unless_exhausted``).
Invariant: ``_applied`` and ``_walks`` change only under the engine lock (``engine._LOCK``).
"""

from __future__ import annotations

import ast
import collections
import contextlib
import functools
import gc
import linecache
import os
import sys
import time
import types
import weakref
from types import CodeType, FunctionType
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .. import _defs, _fingerprint, _members, _switching
from ..errors import (RefusedError, SutureError, UnknownPatch, EXHAUSTED, os_cause,
                      os_failure)
from ..patchfile import Patch


_LRU_PROBE = functools.lru_cache()(lambda: None)
_LRU_TYPE = type(_LRU_PROBE)
_LRU_IS_HEAP_TYPE = bool(_LRU_TYPE.__flags__ & (1 << 9))  # Py_TPFLAGS_HEAPTYPE


def _lru_mark() -> Any:
    """An object every ``lru_cache`` wrapper refers to, so one ``gc.get_referrers`` walk
    finds them all (it is one more argument to the walk that finds a module's functions,
    ``_refgraph._module_functions``). 3.10+: the wrapper type, a heap type (instances
    refer to it). 3.9: the type is static, but ``functools.lru_cache`` hands every wrapper
    it builds ``functools._CacheInfo``, and the wrapper's traverse visits it (checked here
    on a probe, without a heap walk). None: neither holds; the callers fall back to a walk
    per changed function (3.9 before: 100 functions cost 100 walks, 12-66 ms in one C call
    at 50-500 k objects, benchmarks/stall.py)."""
    if _LRU_IS_HEAP_TYPE:
        return _LRU_TYPE
    info = getattr(functools, "_CacheInfo", None)
    return info if info is not None and any(r is info for r in gc.get_referents(_LRU_PROBE)) \
        else None


_LRU_MARK = _lru_mark()
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
    interrupts. The application's value is put back afterwards, or the one it set
    meanwhile (runtime/_switching.py, shared with the agent serving a request).
    Automatic garbage collections are held off for the duration too
    (``_switching.collector_deferred``): one triggered by the engine's allocations runs
    in a single C call (10-15 ms at 50 k objects, a stop for every thread).
    """
    with _switching.lowered(_PREPARE_SWITCH_INTERVAL), _switching.collector_deferred():
        yield


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


# Called as fn(module, patch_id, code, message) when a module imported after its patch was
# applied is refused at import (engine.patch_on_import): the agent records it in the audit
# log (runtime.on_import_refused). A listener that raises is ignored.
import_refused: List[Any] = []

# Called as fn(module, patch_id, code, message) the first time status() finds that the
# live objects of an applied module are no longer the ones the patch installed (reverted by
# the application, SUT-E211; engine.reporting.verify). A listener that raises is ignored.
reverted: List[Any] = []


class Result:
    """What apply/revert did, as data (``to_dict`` crosses the agent socket)."""

    def __init__(self, patch_id: str, state: str, *, modules: Optional[Dict[str, str]] = None,
                 pause_ns: int = 0, ops: int = 0, caveats: Optional[List[str]] = None,
                 notes: Optional[List[str]] = None,
                 verified: Optional[Dict[str, str]] = None) -> None:
        self.patch_id = patch_id
        self.state = state
        self.modules = modules or {}
        self.pause_ns = pause_ns
        self.ops = ops
        self.caveats = caveats or []
        self.notes = notes or []
        self.verified = verified or {}   # module -> the state check's summary (engine/verify)

    def to_dict(self) -> Dict[str, Any]:
        return {"patch": self.patch_id, "state": self.state, "modules": dict(self.modules),
                "pause_ns": self.pause_ns, "ops": self.ops, "caveats": list(self.caveats),
                "notes": list(self.notes), "verified": dict(self.verified)}

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
        self.verified: Dict[str, str] = {}   # module -> the state check's summary
        self.filenames: Dict[str, str] = {}
        self.old_codes: Dict[int, Tuple[CodeType, str]] = {}
        self.caveats: List[str] = []
        self.notes: List[str] = []
        self.applied_at = time.time()
        self.pause_ns = 0
        self.migrated: List[Tuple[Any, Dict[str, Any], List[Tuple[Any, Any]]]] = []
        self.plans: Dict[str, _defs.ModulePlan] = {}   # of the loaded modules, for revert
        self.rewind: Dict[Tuple[int, str], Any] = {}   # original values under replaced patches
        self.rewound_files: Set[str] = set()
        # The distribution the patch names, as checked at apply (None: not checked, see
        # _members); modules imported later are checked against it too (patch_on_import).
        self.owner: Optional[_members.Owner] = None
        # What status() verifies (reporting.verify): per applied module, the module object
        # patched and, per function the patch changed, what its qualified name resolved to
        # right after the commit (object, function, code). Taken again whenever the module is
        # patched again (a reload served by the hook, a re-apply).
        self.live: Dict[str, Tuple[types.ModuleType, List[Tuple[str, Any, Any, Any]]]] = {}
        self.told: Set[str] = set()   # drifts already told to the ``reverted`` listeners

    def pending(self) -> List[str]:
        return [m for m, s in self.modules.items() if s in ("pending import", "pending add")]


_applied: "collections.OrderedDict[str, _Record]" = collections.OrderedDict()


# Results of heap walks, kept for one apply (under _LOCK; "scope" marks that one is under
# way): each walk is one C call that stops every other thread for milliseconds (6 ms at
# 50 k objects), so none is repeated. Outside an apply (import-time patching) nothing is
# kept.
_walks: Dict[str, Any] = {}


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


def _evaluation_refused(exc: BaseException, doing: str,
                        details: Dict[str, Any]) -> SutureError:
    """What a failure of the patch's new code, evaluated in the target before the commit,
    is: ``doing`` (lowercase, "evaluating the new defaults of m:f") failed and nothing was
    changed (a refusal), or SUT-E640 (``_unless_exhausted``)."""
    return _unless_exhausted(exc, doing, RefusedError(
        f"{doing[:1].upper()}{doing[1:]} failed: {type(exc).__name__}: {exc}. "
        f"Nothing was changed.", details=details))


def _raise_os_failure(exc: BaseException, path: Optional[str], doing: str) -> None:
    """The one rule for reads the engine makes in the target: a file that is absent is a
    fact about the module and the caller decides; any other OSError (EMFILE, ENFILE,
    EACCES, EIO...) is raised as ``SystemCallFailed`` (SUT-E640), never turned into "no
    source" (which would read as a baseline mismatch, SUT-E201, and send the operator to
    rebuild a patch that is fine)."""
    cause = os_cause(exc)
    if cause is not None:
        raise os_failure(cause, path, doing) from exc


# -- what the import hook serves ------------------------------------------------

def _pending_index() -> Dict[str, str]:
    return {m: r.patch.id for r in _applied.values() for m, s in r.modules.items()
            if s == "pending import"}


def _applied_index() -> Dict[str, str]:
    """Modules patched in place: a re-execution (importlib.reload, a re-import after
    ``del sys.modules[name]``) is served by the hook too, and patched again."""
    return {m: r.patch.id for r in _applied.values() for m, s in r.modules.items()
            if s == "applied" and not any(mp.name == m and mp.action == "add"
                                          for mp in r.patch.modules)}


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


# -- finding records, tracebacks, hooks' data -------------------------------------

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
        return live_module(name)

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


# -- the module a patch's name means here (docs/engine.md, "Scripts (__main__)") -----

def running_as_main(name: str) -> Optional[types.ModuleType]:
    """``sys.modules["__main__"]`` when it runs the file of the module ``name`` (which
    this process has not imported by that name), else None."""
    main = sys.modules.get("__main__")
    if main is None or name == "__main__" or name in sys.modules:
        return None
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if isinstance(spec_name, str) and spec_name != "__main__":
        return main if spec_name == name else None       # python -m pkg.mod
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    parts = name.split(".")
    want = parts[:-1] + [parts[-1] + ".py"]
    got = os.path.normpath(file).replace(os.sep, "/").split("/")
    return main if got[-len(want):] == want else None


def live_module(name: str) -> Optional[types.ModuleType]:
    """The module the patch's module ``name`` is in this process: imported by that name,
    or running as ``__main__`` (``running_as_main``)."""
    return sys.modules.get(name) or running_as_main(name)


def state_names(name: str, module: Any) -> Tuple[str, str]:
    """(module name, import root) that fingerprint ``module``'s state as that of the patch's
    module ``name`` (the manifest's, from a fresh import by that name). For a script running
    as ``__main__``, its functions and classes say ``__module__ == "__main__"``: walked as
    ``__main__``, and with the root its file lies under (``app.py`` for ``app``,
    ``pkg/mod.py`` for ``pkg.mod``), ``__main__``'s place is ``name`` again."""
    root = _fingerprint.import_root(name)
    if name == "__main__" or module is None or module is not sys.modules.get("__main__"):
        return name, root
    file = (_own_dict(module) or {}).get("__file__")
    if not root and isinstance(file, str) and os.path.isabs(file):
        root = file
        for _ in name.split("."):
            root = os.path.dirname(root)
    return "__main__", root
