"""The patch's own hooks: pre/post apply and revert, and instance migrations.

Enters: a ``_Record`` whose ``hooks`` module was loaded by check. Leaves: nothing, or
``HookFailed`` (a pre-hook or migration refused: nothing changed).
Invariant: a failed migration restores every migrated instance's attributes and slots
(``_unmigrate``) before the refusal leaves.
"""

from __future__ import annotations

import gc
import types
from typing import Any, Dict, List

from .commit import MISSING
from ..errors import HookFailed
from ._refgraph import _resolve_class
from ._state import HookContext, _Record, live_module


def _migrate(rec: _Record, table: str = "MIGRATIONS") -> None:
    """Run the hooks' migrations (``table``: MIGRATIONS at apply, REVERT_MIGRATIONS at
    revert) on every live object of each named class and its subclasses (the nearest
    class with a migration wins); any failure restores them all and refuses."""
    migrations = getattr(rec.hooks, table, None) if rec.hooks else None
    if not migrations:
        return
    targets: Dict[type, Any] = {}
    for key, fn in migrations.items():
        modname, _, qual = key.partition(":")
        module = live_module(modname)
        cls = _resolve_class(module, qual) if module else None
        if cls is not None:
            targets[cls] = fn
    if not targets:
        return
    family: Dict[type, Any] = {}
    for cls in targets:
        for sub in _subclasses(cls):
            if sub not in family:
                family[sub] = next(targets[k] for k in sub.__mro__ if k in targets)
    objs = [o for o in gc.get_referrers(*family) if type(o) in family
            and not isinstance(o, type)]
    slots = {cls: _slot_descriptors(cls) for cls in family}
    for o in objs:
        snapshot = dict(o.__dict__) if hasattr(o, "__dict__") else {}
        rec.migrated.append((o, snapshot, [(d, _slot_get(d, o)) for d in slots[type(o)]]))
        try:
            family[type(o)](o)
        except Exception as exc:
            _unmigrate(rec)
            raise HookFailed(f"Migration of {type(o).__qualname__} instances failed in patch "
                             f"{rec.patch.short_id}: {type(exc).__name__}: {exc}. Every "
                             "migrated instance's attributes were restored and the patch was "
                             "not " + ("applied" if table == "MIGRATIONS" else "reverted")
                             + " (what a migration changed inside the objects those "
                             "attributes refer to, such as a list.append, is not undone).",
                             details={"patch": rec.patch.id}) from exc


def _subclasses(cls: type) -> List[type]:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        if c not in out:
            out.append(c)
            todo.extend(type.__subclasses__(c))
    return out


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
