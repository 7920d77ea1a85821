"""The in-process half of Suture: apply, revert and report patches here.

Constraints, because this code loads into other people's processes:
* standard library only, no third-party import, ever;
* importing it does nothing: no threads, no hooks, no sys.meta_path change;
  the import hook is installed by ``apply`` only while a patch has modules
  still to import, adds modules or has patched a module in place (it serves
  reloads), and removed when none is left;
* it supports CPython 3.9-3.15, GIL builds (a free-threaded build is refused:
  docs/engine.md, "Free-threaded builds").
"""

from __future__ import annotations

from .errors import (BaselineMismatch, DeadlinePassed, HookFailed, NeedsHook, NotInDistribution,
                     NotQuiescent, PatchFormatError, RefusedError, RestartRequired,
                     RevertOrderError, RolledBack, SutureError, UnitsBusy, UnknownPatch,
                     UnprovenDistribution)

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Dict, List, Optional, Union

    from ._units import unit
    from .engine import HookContext, Result, drop_shadow, shadow
    from .patchfile import Patch, load as load_patch

# Importing this package loads only ``errors``: the engine, the patch reader and the units
# come on first use (PEP 562), so that the agent idling in every process, and the CLI
# importing an error class, do not pay for them (issue 19).
_LAZY = {"HookContext": ("engine", "HookContext"), "Result": ("engine", "Result"),
         "shadow": ("engine", "shadow"), "drop_shadow": ("engine", "drop_shadow"),
         "unit": ("_units", "unit"), "Patch": ("patchfile", "Patch"),
         "load_patch": ("patchfile", "load")}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value

__all__ = [
    # API
    "apply", "revert", "status", "applied", "load_patch", "shadow", "drop_shadow", "unit",
    # data
    "Patch", "Result", "HookContext",
    # errors
    "SutureError", "PatchFormatError", "RefusedError", "BaselineMismatch", "RestartRequired",
    "NeedsHook", "HookFailed", "NotQuiescent", "RolledBack", "UnknownPatch", "RevertOrderError",
    "NotInDistribution", "UnprovenDistribution", "DeadlinePassed", "UnitsBusy",
]


def apply(patch: Union[Patch, bytes], *, wait_quiescent: Optional[float] = None,
          restricted: bool = False, deadline: Optional[float] = None) -> Result:
    """Apply ``patch`` to this process: all of it, or nothing.

    Every module it touches must belong to the distribution it names, when that
    distribution is installed here with metadata. ``restricted``: the patch is trusted
    only through keys restricted to its distribution, so a distribution without
    metadata here (or no distribution) is refused too (``_members``).

    Raises a ``RefusedError`` subclass (nothing changed) or ``RolledBack``
    (started, failed, every change undone). ``deadline`` (``time.time()`` seconds):
    refused with ``DeadlinePassed`` if it has passed when the commit is reached.
    """
    if isinstance(patch, (bytes, bytearray)):
        from .patchfile import load
        patch = load(bytes(patch))
    from . import engine
    return engine.apply(patch, wait_quiescent=wait_quiescent, restricted=restricted,
                        deadline=deadline)


def revert(patch_id: str, force: bool = False, deadline: Optional[float] = None) -> Result:
    """Restore every object ``patch_id`` touched; newest patch first. ``force`` reverts
    even when objects built meanwhile lack state the restored code reads (SUT-E209).
    ``deadline``: as for ``apply``."""
    from . import engine
    return engine.revert(patch_id, force, deadline)


_ENGINE = "suture.runtime.engine"


def status() -> Dict[str, Any]:
    """Applied patches, per-module state, and old code still running."""
    import sys
    if _ENGINE not in sys.modules:
        # Nothing was ever applied in this process (every apply imports the engine): what
        # engine.status() answers then, without importing it, so that `suture status`
        # asking every process on a host leaves idle agents idle (issue 19).
        # tests/agent/test_idle.py checks that the two answers are equal.
        from . import _freethreaded
        return {"patches": [], "active": [], "unpatchable": _freethreaded.report(),
                "old_calls": {"counting": False, "unavailable": None}}
    from . import engine
    return engine.status()


def count_old_calls(on: bool) -> Optional[str]:
    """Count calls into the code applied patches replaced (CPython 3.12+), or stop; None,
    or why it cannot count here. ``status()`` then reports ``old_calls`` per patch."""
    from . import engine
    return engine.count_old_calls(on)


def applied() -> List[str]:
    import sys
    if _ENGINE not in sys.modules:
        return []   # nothing was ever applied here (see status())
    from . import engine
    return engine.applied_ids()
