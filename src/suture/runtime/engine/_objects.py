"""What exists before a patch: objects the other side's code built, frames of old callers.

The builder's deltas (``_defs.instances``) say which attributes the methods of one side
read that objects built by the other side may lack, and which old callers would call a
changed callee the wrong way. Here they meet the live process:

* a *derived* attribute gets a ``LazyAttr`` on its class, committed with the code: an
  object that lacks the attribute computes it on its first read, from the expression the
  fixed ``__init__`` uses, stores it in its own ``__dict__`` and keeps it (the stop-the-
  world step walks no heap and touches no object);
* any other attribute is counted among live objects (``at_risk``: one C-level heap walk
  through ``gc.get_referrers`` of the classes, outside the commit, no application code
  called); while some object lacks it and no migration of the patch sets it, apply (or
  revert) refuses, naming the class, the attribute and the count (``ObjectsNeedMigration``);
* old callers: frames running their old code are looked for on every thread's stack and
  among suspended generators, coroutines and async generators (``_activeness.active``);
  apply waits for them, bounded, and refuses naming them if they stay (``FramesAtRisk``).

Both counts are made again right after the commit: an object built, or a frame entered,
between the first look and the commit makes the apply roll back rather than report
"applied" over something that the next call breaks.
Enters: a live module, its ``ModulePlan``. Leaves: ops, counts and frames as data.
Invariant: nothing here calls application code, except the expression of a derived
attribute, which is the fixed ``__init__``'s own and runs on first read.
"""

from __future__ import annotations

import ast
import gc
import time
import types
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .. import _defs, _fingerprint
from .._defs.instances import StateDelta, cross_module_hazards
from ..errors import FramesAtRisk, ObjectsNeedMigration
from .commit import Op
from ._activeness import active
from ._patchhooks import _subclasses
from ._refgraph import _resolve_class

_object_getattribute = object.__getattribute__


class LazyAttr:
    """An attribute an object gets on first read, computed as a new object's ``__init__``
    would compute it (``klp_shadow_get_or_alloc`` for Python objects).

    A non-data descriptor on the class: an object that has the attribute in its
    ``__dict__`` never reaches it. One that lacks it gets the value of ``code`` evaluated
    in the module's globals, with ``params`` bound to the live ``__init__``'s defaults,
    stored with ``dict.setdefault`` (two threads reading first at once keep one value).
    Reading it on the class goes on to the next class in the MRO, as before."""

    __slots__ = ("owner", "name", "code", "params", "namespace", "__weakref__")

    def __init__(self, owner: type, name: str, code: types.CodeType, params: Sequence[str],
                 namespace: Dict[str, Any]) -> None:
        self.owner = owner
        self.name = name
        self.code = code
        self.params = tuple(params)
        self.namespace = namespace

    def __get__(self, obj: Any, cls: Optional[type] = None) -> Any:
        if obj is None:
            return self._inherited(cls or self.owner)
        values = _defaults(self.owner.__dict__.get("__init__"), self.params)
        value = eval(self.code, self.namespace, values)  # noqa: S307 - the fixed __init__'s expression
        try:
            d = _object_getattribute(obj, "__dict__")
        except AttributeError:
            return value
        return d.setdefault(self.name, value)

    def _inherited(self, cls: type) -> Any:
        mro = cls.__mro__
        seen = False
        for k in mro:
            if k is self.owner:
                seen = True
                continue
            if seen and self.name in k.__dict__:
                v = k.__dict__[self.name]
                get = getattr(type(v), "__get__", None)
                return get(v, None, cls) if get is not None else v
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {self.name!r}")

    def __repr__(self) -> str:
        return f"<suture lazy attribute {self.owner.__qualname__}.{self.name}>"


_fingerprint.PER_OBJECT.append(LazyAttr)


def _defaults(init: Any, params: Sequence[str]) -> Dict[str, Any]:
    if not params:
        return {}
    fn = getattr(init, "__wrapped__", init)
    code = getattr(fn, "__code__", None)
    if code is None:
        raise AttributeError(f"no __init__ to read the defaults of {', '.join(params)} from")
    positional = code.co_varnames[:code.co_argcount]
    defaults = fn.__defaults__ or ()
    out = dict(zip(positional[len(positional) - len(defaults):], defaults))
    out.update(fn.__kwdefaults__ or {})
    return {p: out[p] for p in params}


def _plain(cls: type) -> bool:
    """Reads of the class's objects reach a class attribute the ordinary way."""
    return cls.__getattribute__ is object.__getattribute__ and cls.__dictoffset__ != 0  # type: ignore[comparison-overlap]


def lazy_ops(module: types.ModuleType, plan: _defs.ModulePlan, direction: str,
             label: str) -> Tuple[List[Op], List[StateDelta], List[str]]:
    """Ops that install ``LazyAttr`` for the derived deltas of ``direction``; the
    deltas that cannot be derived here (to count instead); notes."""
    ops: List[Op] = []
    left: List[StateDelta] = []
    notes: List[str] = []
    namespace = module.__dict__
    for d in plan.instance_state:
        if d.direction != direction:
            continue
        cls = _resolve_class(module, d.cls)
        if cls is None:
            continue
        if d.how != "derived":
            left.append(d)
            continue
        if isinstance(cls.__dict__.get(d.attr), LazyAttr):
            continue   # put there by an earlier revert of this patch: it stays
        if d.attr in cls.__dict__:
            notes.append(f"{module.__name__}:{d.place}: the class itself has `{d.attr}`; "
                         "objects that lack it read the class's")
            continue
        if not _plain(cls):
            left.append(d)   # its own __getattribute__, or no __dict__: counted instead
            continue
        code = compile(d.value, f"<suture {label} {module.__name__}:{d.place}>", "eval",
                       dont_inherit=True)
        ops.append(Op("attr", cls, d.attr, LazyAttr(cls, d.attr, code, d.params, namespace),
                      f"{module.__name__}:{d.place} (lazy)"))
    return ops, left, notes


def at_risk(wanted: Sequence[Tuple[type, StateDelta]]) -> List[Dict[str, Any]]:
    """For each (class, delta): how many live objects of the class (or a subclass) lack the
    attribute, in their ``__dict__`` and on their class. One heap walk for all of them;
    when it finds some, one ``gc.collect()`` and a second walk, so that garbage the
    collector has not reached yet (an object of a finished request in a reference cycle)
    does not count as live."""
    found = _at_risk(wanted)
    if found:
        gc.collect()
        found = _at_risk(wanted)
    return found


def _at_risk(wanted: Sequence[Tuple[type, StateDelta]]) -> List[Dict[str, Any]]:
    if not wanted:
        return []
    counts = [0] * len(wanted)
    fallback: Dict[Tuple[type, str], bool] = {}
    for o, idx, own in _instances([cls for cls, _ in wanted]):
        t = type(o)
        for i in idx:
            attr = wanted[i][1].attr
            if attr in own:
                continue
            key = (t, attr)
            if key not in fallback:
                fallback[key] = any(attr in k.__dict__ for k in t.__mro__)
            if not fallback[key]:
                counts[i] += 1
    return [{"class": f"{cls.__module__}:{d.cls}", "attribute": d.attr, "objects": n,
             "how": d.how, "why": d.why, "direction": d.direction}
            for (cls, d), n in zip(wanted, counts) if n]


def _instances(targets: Sequence[type]) -> Iterator[Tuple[Any, List[int], Dict[str, Any]]]:
    """(object, indexes into ``targets`` of the classes it is an instance of, its own
    ``__dict__`` or {}) for every live object of those classes and their subclasses: one
    ``gc.get_referrers`` walk, no application code (objects refer to their class)."""
    classes: Dict[type, List[int]] = {}
    for i, cls in enumerate(targets):
        for c in _subclasses(cls):
            classes.setdefault(c, []).append(i)
    for o in gc.get_referrers(*classes):
        idx = classes.get(type(o))
        if idx is None or isinstance(o, type):
            continue
        try:
            own = _object_getattribute(o, "__dict__")
        except AttributeError:
            own = {}
        yield o, idx, own


def recorded(wanted: Sequence[Tuple[type, StateDelta]]) -> List[Dict[str, Any]]:
    """For each (class, delta) of state the fixed code keeps and changes after construction
    (``later``, from a literal ``initial``): how many live objects hold another value than
    that literal. A revert drops it: the restored code neither reads nor keeps it (a
    connection's strict key exchange agreed with its peer, asyncssh 2.14.2)."""
    out: List[Dict[str, Any]] = []
    todo = [(c, d) for c, d in wanted if d.later and d.initial]
    if not todo:
        return out
    counts = [0] * len(todo)
    values: List[Dict[str, int]] = [{} for _ in todo]
    initial = [ast.literal_eval(d.initial) for _, d in todo]
    for _, idx, own in _instances([cls for cls, _ in todo]):
        for i in idx:
            v = own.get(todo[i][1].attr, initial[i])
            if type(v) is type(initial[i]) and v == initial[i]:
                continue
            counts[i] += 1
            shown = repr(v) if type(v) in (bool, int, float, str, bytes, type(None)) \
                else type(v).__name__
            values[i][shown[:40]] = values[i].get(shown[:40], 0) + 1
    return [{"class": f"{cls.__module__}:{d.cls}", "attribute": d.attr, "objects": n,
             "values": values[i], "initial": d.initial, "direction": "revert",
             "why": f"the fixed code set it (from {d.initial}); the restored code ignores it"}
            for i, ((cls, d), n) in enumerate(zip(todo, counts)) if n]


def refuse_objects(short_id: str, found: List[Dict[str, Any]], direction: str,
                   patch_id: str, stub: bool = True) -> ObjectsNeedMigration:
    verb = "applied" if direction == "apply" else "reverted"
    hook = "MIGRATIONS" if direction == "apply" else "REVERT_MIGRATIONS"
    what = "; ".join(f"{f['objects']} live object(s) of {f['class']} lack `{f['attribute']}` "
                     f"({f['why']})" for f in found[:5])
    return ObjectsNeedMigration(
        f"Patch {short_id} was not {verb}: the "
        + ("fixed" if direction == "apply" else "vulnerable")
        + f" code reads state that objects already in this process lack: {what}. Those "
        "objects would raise AttributeError on their next call. Nothing was changed; "
        + (f"add a migration ({hook}) to the patch's hooks (`suture build` writes a stub "
           "to fill in), or retry once those objects are gone."
           if stub else "retry once those objects are gone."),
        details={"patch": patch_id, "objects": found, "direction": direction})


def refuse_dropped(short_id: str, found: List[Dict[str, Any]],
                   patch_id: str) -> ObjectsNeedMigration:
    what = "; ".join(
        f"{f['objects']} live object(s) of {f['class']} hold `{f['attribute']}` = "
        + ", ".join(f"{v} ({n})" for v, n in sorted(f["values"].items())[:3])
        + f" where a new one starts at {f['initial']}" for f in found[:5])
    return ObjectsNeedMigration(
        f"Patch {short_id} was not reverted: objects hold state that the fixed code recorded "
        f"after building them and the restored code would ignore: {what}. Such state can "
        "be an agreement with a peer (a protocol option, a key exchange) that the vulnerable "
        "code cannot honour, and the object may fail after the revert. Nothing was changed; "
        "revert with --force to drop that state, or wait until those objects are gone "
        "(REVERT_MIGRATIONS naming the class also lets the revert go ahead).",
        details={"patch": patch_id, "objects": found, "direction": "revert"})


FRAME_WAIT_SECONDS = 2.0


def hazard_codes(plans: Dict[str, _defs.ModulePlan], old_codes: Dict[int, Tuple[Any, ...]],
                 packages: Dict[str, str]) -> Dict[int, Tuple[Any, ...]]:
    """The old code objects (of ``old_codes``) of callers found calling a changed callee,
    of their module or of another module of the patch (``packages``: each module's
    ``__package__``), in a way its new version rejects."""
    why = {f"{m}:{h.caller}": h for m, p in plans.items() for h in p.call_hazards}
    trees = {m: (p.old_tree, p.new_tree) for m, p in plans.items()
             if p.old_tree is not None and p.new_tree is not None}
    changed = {m: _defs.code_changed(p) for m, p in plans.items()}
    for m, found in cross_module_hazards(trees, packages, changed).items():   # type: ignore[arg-type]
        why.update({f"{m}:{h.caller}": h for h in found})
    out: Dict[int, Tuple[Any, ...]] = {}
    for k, v in old_codes.items():
        h = why.get(v[1])
        if h is not None:
            out[k] = (v[0], v[1], f"calls {h.callee}() at line {h.line}: {h.why}")
    return out


def wait_frames(codes: Dict[int, Tuple[Any, ...]], seconds: float, short_id: str,
                patch_id: str) -> None:
    """Wait up to ``seconds`` for no frame to run ``codes``; refuse naming them if some do."""
    if not codes:
        return
    deadline = time.monotonic() + seconds
    while True:
        busy = active(codes)
        if not busy:
            return
        if time.monotonic() >= deadline:
            raise refuse_frames(short_id, busy, codes, seconds, patch_id)
        time.sleep(0.01)


def refuse_frames(short_id: str, busy: List[Dict[str, Any]], codes: Dict[int, Tuple[Any, ...]],
                  seconds: float, patch_id: str) -> FramesAtRisk:
    why = {v[1]: v[2] for v in codes.values()}
    where = "; ".join(
        f"{b['qualname']}() in a {b['where']}"
        + (f" ({b['thread']})" if b.get("thread") else f" ({b['task']})" if b.get("task") else "")
        + (f" at line {b['line']}" if b.get("line") else "")
        + f", which {why.get(b['qualname'], 'calls a changed function')}"
        for b in busy[:5])
    return FramesAtRisk(
        f"Patch {short_id} was not applied: frames of old code that would call a changed "
        f"function the old way were still running after {seconds:g} s: {where}. Applied now, "
        "each would fail on that call (TypeError) when it resumes. Nothing was changed; "
        "retry when they have finished (a worker loop that never returns needs its worker "
        "restarted, or a patch that keeps the old signature working).",
        details={"patch": patch_id, "frames": busy})


def live_class(module: Optional[types.ModuleType], qualname: str) -> Optional[type]:
    return _resolve_class(module, qualname) if module is not None else None


def migrated_classes(hooks: Any, name: str) -> Dict[str, Any]:
    """``{"module:Class": fn}`` of the hooks' ``name`` (MIGRATIONS / REVERT_MIGRATIONS)."""
    table = getattr(hooks, name, None) if hooks is not None else None
    return dict(table) if isinstance(table, dict) else {}


