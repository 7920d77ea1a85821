"""Step 5: the patched process must equal a fresh import of the fixed release.

Enters: the patch's state manifest (``patch.meta["state"]``, written by the builder from
fresh imports of both releases: tooling/build/state.py) and the live modules. Before the
commit (``before``), every manifest path of every module about to be patched is
fingerprinted in the live process (``_fingerprint``); after the commits and the
post-apply hook (``after``), again. Leaves: a ``Verdict`` per module: the paths that do
not equal the fixed release (the caller then undoes everything and refuses with
``StateDiverges``), and the exceptions, paths that the application or the environment
had already moved away from the baseline before the apply.

The rule, per path:

* live value before == the baseline's: after, it must equal the fixed release's;
* live value before == the fixed release's: after, it must still equal it;
* anything else before: the application changed it at run time, or this environment
  computes it differently from the build's (another Python, another platform, an
  optional dependency): it is listed as an exception, never silently passed, and not
  held to the fixed value (an apply must not overwrite the application's own state).

A module whose state the builder could not verify (it would not import there) is listed
as "not verified" with the builder's reason; so is every module of a patch built before
manifests existed.

Invariant: no application code runs (``_fingerprint`` reads C-level slots only); this
step changes nothing.
"""

from __future__ import annotations

import sys
import types
from typing import AbstractSet, Any, Dict, List, Optional, Sequence, Set, Tuple

from .. import _fingerprint
from ..errors import StateDiverges
from ..patchfile import Patch
from ._state import _ModuleTxn, state_names
from .commit import MISSING, Call, Op
from ._refgraph import _importers
from .post import _annotations, _rebuild


class Verdict:
    """The state check of one module: ``diverged`` refuses the apply."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.verified: Optional[bool] = None     # None: no manifest for it
        self.reason = ""
        self.paths = 0
        self.diverged: List[Tuple[str, str, str]] = []   # label, live description, expected
        self.exceptions: List[str] = []

    def summary(self) -> str:
        if self.verified is None:
            return "state not verified: the patch carries no state manifest"
        if not self.verified:
            return f"state not verified: {self.reason}"
        text = f"state verified equal to a fresh import of the fixed release ({self.paths} " \
               f"path(s) checked)"
        if self.exceptions:
            text += f"; {len(self.exceptions)} path(s) hold run-time or environment " \
                    f"state and were not held to it: " + "; ".join(self.exceptions[:5])
        return text


def _manifest(patch: Patch) -> Optional[Dict[str, Any]]:
    state = patch.meta.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("modules"), dict):
        return None
    modules: Dict[str, Any] = state["modules"]
    return modules


def before(patch: Patch, modules: Dict[str, types.ModuleType]) -> Dict[str, Any]:
    """Fingerprint the manifest paths of ``modules`` now (before anything changes)."""
    manifest = _manifest(patch)
    taken: Dict[str, Any] = {}
    for name, module in modules.items():
        entry = (manifest or {}).get(name)
        if not isinstance(entry, dict) or not entry.get("verified"):
            taken[name] = entry
            continue
        ns, (as_name, root) = vars(module), state_names(name, module)
        # the live functions run the baseline's code: its defs' lines tell them apart
        lined = _fingerprint.lined_for(entry.get("lined"), "baseline")
        taken[name] = (entry, [_fingerprint.fingerprint_at(ns, as_name, _segments(p["path"]),
                                                           root=root, lined=lined)
                               for p in entry["paths"]])
    return taken


def excuse(taken: Dict[str, Any], again: Dict[str, Any]) -> None:
    """Paths whose fingerprint changed between ``taken`` and ``again`` (a second ``before``
    after the patch's migrations ran) were set by a migration: like run-time state, a
    person's decision for objects that exist, not a fresh import's; ``after`` lists them
    as exceptions rather than requiring the fixed release's value."""
    for name, got in taken.items():
        later = again.get(name)
        if not (isinstance(got, tuple) and isinstance(later, tuple)):
            continue
        entry, pre = got
        taken[name] = (entry, [p if p == q else "<set by a migration>"
                               for p, q in zip(pre, later[1])])


def repair(taken: Dict[str, Any], txns: Sequence[_ModuleTxn],
           modules: Dict[str, types.ModuleType], deferred: Sequence[Any] = ()) -> List[Any]:
    """The ops that make what differs from the fixed release equal to it, where a fresh
    import's effect can be derived (run after the first commits, so that the fixed code is
    live; their ops form one more atomic commit):

    * a global or class member that the fixed release does not bind: deleted;
    * one whose fixed value the manifest carries as a literal (``__version__``, a
      docstring, a table of strings): set to it;
    * a global bound by a plain top-level assignment whose state still differs (an
      object built at import by code or data the patch changed, ``DEFAULT = Policy(3)``):
      that statement evaluated again and its result bound (``post._rebuild``).

    Only paths that equalled the baseline before the apply, under a global none of whose
    paths the application had moved away from the baseline: run-time state is never
    overwritten. Whatever this cannot derive stays different, and ``after`` refuses.
    ``deferred``: as for ``after`` (what they unbind needs no op)."""
    gone = frozenset((id(o.obj), o.key) for o in deferred)
    alias = {k: v for t in txns for k, v in t.forwarded.items()}
    # old code object -> new, for every function the patch swapped, in any of its modules
    swapped = {id(o.old): o.new for t in txns for o in t.ops if o.kind == "attr"
               and o.key == "__code__" and type(o.old) is types.CodeType}
    ops: List[Any] = []
    for t in txns:
        got, module = taken.get(t.name), modules.get(t.name)
        if not isinstance(got, tuple) or module is None:
            continue
        entry, pre = got
        ns, (as_name, root) = vars(module), state_names(t.name, module)
        lined = _fingerprint.lined_for(entry.get("lined"), "fixed")   # the fixed code is live
        owned = {str(p["path"][0][1]) for p, was in zip(entry["paths"], pre)
                 if was not in (p["baseline"], p["fixed"])}
        todo = []
        for p, was in zip(entry["paths"], pre):
            segs = _segments(p["path"])
            if (was == p["baseline"] and str(segs[0][1]) not in owned
                    and not _unbound(module, segs, gone)
                    and _fingerprint.fingerprint_at(ns, as_name, segs, gone, root, alias, lined)
                    != p["fixed"]):
                todo.append((p, segs))
        # Containers of code objects (Jinja2's ``internal_code``, filled by a decorator at
        # import): the swapped functions' new code objects take the old ones' places.
        if swapped:
            for p, segs in list(todo):
                value = _fingerprint.value_at(ns, segs)
                new = _with_codes(value, swapped)
                where = _location(ns, segs)
                if new is None or where is None or _fingerprint.fingerprint_of(
                        new, ns, as_name, segs, gone, root, alias, lined) != p["fixed"]:
                    continue
                kind, obj, key = where
                ops.append(Op(kind, obj, key, new, f"{t.name}.{p.get('label', key)} "
                                                   "(the swapped functions' new code)"))
                if len(segs) == 1:
                    ops += [Op("item", d, alias_name, new, f"copy of {t.name}.{key}")
                            for d, alias_name, _ in _importers(t.name, {str(key): value})]
                todo = [(q, other) for q, other in todo if other[:len(segs)] != segs]
        # A dataclass field's recorded type is its annotation (dataclasses copies it):
        # an annotation change the builder found inert still changes ``Field.type``.
        fields = _field_types(ns, todo)
        for (qual, fname), field_obj in fields.items():
            new = _annotations(t, module, qual)
            if new is not None and fname in new:
                ops.append(Op("attr", field_obj, "type", new[fname],
                              f"{t.name}.{qual}.__dataclass_fields__[{fname!r}].type "
                              "(as a fresh import of the fixed release)"))
        todo = [(p, segs) for p, segs in todo if _field_at(ns, segs) is None]
        # A path is made equal by setting it, or by setting what differs below it (an
        # object kept, its attributes set: every reference to it sees them); a global
        # with a path neither can cover is built again, whole.
        settable = [_settable(ns, segs, p) for p, segs in todo]
        covered = []
        for i, (_, segs) in enumerate(todo):
            below = [j for j, (_, other) in enumerate(todo)
                     if len(other) > len(segs) and other[:len(segs)] == segs]
            covered.append(settable[i] or bool(below) and all(settable[j] for j in below))
        rebuild = sorted({str(segs[0][1]) for (p, segs), ok in zip(todo, covered)
                          if not ok and _plain_global(ns, segs)})
        for (p, segs), ok in zip(todo, settable):
            if str(segs[0][1]) in rebuild or not ok:
                continue
            where = _location(ns, segs)
            assert where is not None   # _settable
            kind, obj, key = where
            try:
                new = MISSING if p["fixed"] == "absent" else _fingerprint.from_literal(
                    p["literal"], root)
            except ValueError:   # a reference to what this process does not define
                continue         # stays different: ``after`` names it
            ops.append(Op(kind, obj, key, new, f"{t.name}.{p.get('label', key)} "
                                               "(as a fresh import of the fixed release)"))
        if rebuild:
            ops += _rebuilt(t, module, rebuild, entry, root, alias, lined)
    # One op per place: two paths can name the same binding (an attribute of an object
    # reached from two globals), and each op keeps the value it found when it was made,
    # so a second op on the same place would undo to the first's new value.
    seen: Set[Tuple[int, Any, str]] = set()
    unique = []
    for op in ops:
        spot = (id(op.obj), op.key, op.kind) if isinstance(op, Op) else None
        if spot is None or spot not in seen:
            unique.append(op)
        if spot is not None:
            seen.add(spot)
    return unique


def aliases(patch: Patch) -> List[Any]:
    """Ops that give ``sys.modules`` the names a fresh import of the fixed release loads its
    modules under (the manifest's ``aliases``: requests 2.32's ``requests.packages``
    aliases, setuptools 70's vendored packages under their new name), each bound to the
    module already loaded from that place, so that importing the name finds it rather than
    loading a second copy: a name this process lacks, or binds to the module the
    baseline's import bound it to (a name the process bound otherwise is its own). A place
    not loaded here gets no name: importing it loads it as in a fresh process. Revert
    puts the names back as they were."""
    state = patch.meta.get("state")
    wanted = state.get("aliases") if isinstance(state, dict) else None
    if not isinstance(wanted, dict) or not wanted:
        return []
    modules = sys.modules
    by_place: Dict[str, Any] = {}
    place_of: Dict[int, str] = {}
    for name, module in list(modules.items()):
        if type(name) is str and _fingerprint.isa(module, types.ModuleType):
            own = vars(module).get("__name__")
            place = _fingerprint.module_place(own if type(own) is str else name)
            by_place.setdefault(place, module)
            place_of[id(module)] = place
    ops = []
    for key, (place, was) in sorted(wanted.items()):
        live = modules.get(key)
        if place not in by_place or live is by_place[place]:
            continue
        if live is None or place_of.get(id(live)) == was:
            ops.append(Op("item", modules, key, by_place[place], f"sys.modules[{key!r}] (as "
                          "a fresh import of the fixed release)"))
    return ops


def filters(patch: Patch) -> List[Any]:
    """Ops that make ``warnings.filters`` what a fresh import of the fixed release makes of
    it (the manifest's ``warnings``): a filter the baseline's import installed and the
    fixed release's does not is taken out (its first equal entry), one the fixed release
    installs is put in at its index, unless an equal one is there. The list is replaced,
    not changed in place (revert puts the old list object back), and the warnings
    module's cache is invalidated both ways. A filter whose category this process does not
    define is not put in (the build's dry run shows such a difference)."""
    state = patch.meta.get("state")
    wanted = state.get("warnings") if isinstance(state, dict) else None
    warnings = sys.modules.get("warnings")
    if not isinstance(wanted, dict) or warnings is None \
            or type(getattr(warnings, "filters", None)) is not list:
        return []
    live = list(warnings.filters)
    plain = _fingerprint.warning_filters()
    changed = False
    for entry in wanted.get("removed") or ():
        if entry in plain:
            i = plain.index(entry)
            del plain[i], live[i]
            changed = True
    for index, entry in wanted.get("added") or ():
        if entry in plain:
            continue
        made = _filter(entry)
        if made is None:
            continue
        at = min(int(index), len(live))
        live.insert(at, made)
        plain.insert(at, entry)
        changed = True
    if not changed:
        return []
    ops: List[Any] = [Op("attr", warnings, "filters", live, "warnings.filters (as a fresh "
                         "import of the fixed release)")]
    c_module = sys.modules.get("_warnings")
    if c_module is not None and getattr(c_module, "filters", None) is warnings.filters:
        ops.append(Op("attr", c_module, "filters", live, "_warnings.filters"))
    mutated = getattr(warnings, "_filters_mutated", None)
    if callable(mutated):
        ops.append(Call(mutated, "warnings._filters_mutated"))
    return ops


def _filter(entry: List[Any]) -> Optional[Tuple[Any, ...]]:
    """The ``warnings.filters`` tuple ``warning_filters`` describes as ``entry`` (as
    ``filterwarnings`` makes it), or None when its category is not defined here."""
    import re
    action, message, category, module, lineno = entry
    cls = _fingerprint.resolve(*category) if isinstance(category, list) else MISSING
    if not _fingerprint.isa(cls, type):
        return None
    return (action, re.compile(message, re.I) if message is not None else None, cls,
            re.compile(module) if module is not None else None, lineno)


def _with_codes(value: Any, swapped: Dict[int, Any]) -> Any:
    """A copy of a set, frozenset, list or tuple with swapped code objects replaced by their
    new code (None when it holds none, or is another kind of value)."""
    t = type(value)
    if t not in (set, frozenset, list, tuple):
        return None
    items = list(value)
    if not any(type(v) is types.CodeType and id(v) in swapped for v in items):
        return None
    return t(swapped.get(id(v), v) if type(v) is types.CodeType else v for v in items)


def _rebuilt(t: _ModuleTxn, module: types.ModuleType, names: List[str], entry: Dict[str, Any],
             root: str, alias: Dict[int, Any], lined: _fingerprint.Lined) -> List[Any]:
    """``post._rebuild``'s ops, kept only if every global it builds again fingerprints as the
    fixed release's (a global that other code fills at import, a registry its decorators
    fill, would come out of its own statement only partly built: not a fresh import)."""
    ops_before, watch_before = len(t.ops), len(t.watch)
    ops = _rebuild(t, module, names)
    ns = vars(module)
    fixed = {str(p["path"][0][1]): p["fixed"] for p in entry["paths"] if len(p["path"]) == 1}
    made = {o.key: o.new for o in ops if o.kind == "item" and o.obj is ns}
    if all(name in made and name in fixed and _fingerprint.fingerprint_of(
            made[name], ns, t.name, [("g", name)], root=root, alias=alias,
            lined=lined) == fixed[name]
           for name in names):
        return ops
    del t.ops[ops_before:]
    del t.watch[watch_before:]
    return []


def _field_at(ns: Dict[str, Any], segs: List[_fingerprint.Segment]) -> Any:
    """(class qualname, field name, Field) when the path is a dataclass field of a class
    defined in the module (or its ``type``), else None."""
    for n in range(1, len(segs) - 1):
        if (segs[n] == ("a", "__dataclass_fields__") and segs[n + 1][0] == "k"
                and (len(segs) == n + 2 or segs[n + 2][1] == "type")
                and all(k == "g" or k == "a" for k, _ in segs[:n])):
            if not _fingerprint.isa(_fingerprint.value_at(ns, segs[:n]), type):
                return None
            field_obj = _fingerprint.value_at(ns, segs[:n + 2])
            return (".".join(str(key) for _, key in segs[:n]), str(segs[n + 1][1]), field_obj)
    return None


def _field_types(ns: Dict[str, Any], todo: List[Tuple[Dict[str, Any], List[Any]]]
                 ) -> Dict[Tuple[str, str], Any]:
    out: Dict[Tuple[str, str], Any] = {}
    for _, segs in todo:
        hit = _field_at(ns, segs)
        if hit is not None:
            out[(hit[0], hit[1])] = hit[2]
    return out


def _settable(ns: Dict[str, Any], segs: List[_fingerprint.Segment], p: Dict[str, Any]) -> bool:
    """Whether the path's fixed value is known (absent, or carried as a literal) and its
    place can be set without running application code (``_location``)."""
    if p["fixed"] != "absent" and not isinstance(p.get("literal"), list):
        return False
    return _location(ns, segs) is not None


def _location(ns: Dict[str, Any], segs: List[_fingerprint.Segment]) -> Optional[Tuple[str, Any, Any]]:
    """(op kind, object, key) that binds the path: a global, a class member, an item of a
    plain dict, or an attribute in an instance's ``__dict__`` (set there directly, so that
    no ``__setattr__`` runs); each step above it one of these too. None otherwise."""
    if segs[0][0] != "g":
        return None
    where: Tuple[str, Any, Any] = ("item", ns, segs[0][1])
    for n in range(1, len(segs)):
        parent = _fingerprint.value_at(ns, segs[:n])
        kind, key = segs[n]
        if kind == "a" and _fingerprint.isa(parent, type):
            where = ("attr", parent, key)
        elif kind == "k" and type(parent) is dict:
            where = ("item", parent, key)
        elif kind == "a" and not _fingerprint.isa(parent, (types.FunctionType, types.ModuleType)):
            own = _fingerprint.instance_dict(parent)
            if own is None:
                return None
            where = ("item", own, key)
        else:
            return None
    return where


def _plain_global(ns: Dict[str, Any], segs: List[_fingerprint.Segment]) -> bool:
    """A global that holds neither a class nor a function nor a module (those the engine
    patches in place; building them again would orphan every reference to them)."""
    value = ns.get(str(segs[0][1]), MISSING)
    return value is not MISSING and not _fingerprint.isa(
        value, (type, types.FunctionType, types.ModuleType))


def after(taken: Dict[str, Any], modules: Dict[str, types.ModuleType],
          deferred: Sequence[Any] = (), alias: Optional[Dict[int, Any]] = None
          ) -> List[Verdict]:
    """Compare the live state now with what ``before`` took and the manifest expects.
    ``deferred``: deletion ops left out of the commit until old code has left every stack
    (docs/engine.md, "Deletions wait"); the names they unbind count as absent. ``alias``:
    old methods that forward to new ones (id -> the new one), fingerprinted as those."""
    gone = frozenset((id(o.obj), o.key) for o in deferred)
    verdicts: List[Verdict] = []
    for name, module in modules.items():
        v = Verdict(name)
        verdicts.append(v)
        got = taken.get(name)
        if got is None:
            continue
        if isinstance(got, dict):          # the builder could not verify this module
            v.verified, v.reason = False, str(got.get("reason") or "unknown reason")
            continue
        entry, pre = got
        v.verified, v.paths = True, len(entry["paths"])
        ns, (as_name, root) = vars(module), state_names(name, module)
        lined = _fingerprint.lined_for(entry.get("lined"), "fixed")   # the fixed code is live
        for p, was in zip(entry["paths"], pre):
            segments = _segments(p["path"])
            now = ("absent" if _unbound(module, segments, gone) else
                   _fingerprint.fingerprint_at(ns, as_name, segments, gone, root, alias, lined))
            if was not in (p["baseline"], p["fixed"]):
                v.exceptions.append(str(p.get("label", p["path"])))
                continue
            if now != p["fixed"]:
                value = _fingerprint.value_at(ns, _segments(p["path"]))
                desc = (p.get("describe") or ["", ""])[1] if isinstance(
                    p.get("describe"), list) else ""
                v.diverged.append((str(p.get("label", p["path"])),
                                   _fingerprint.describe(value), str(desc or p["fixed"])))
    return verdicts


def reset_paths(patch: Patch, name: str, module: types.ModuleType) -> List[str]:
    """Paths of the patch's state manifest (docs/engine.md, "State equivalence") whose live
    value is the baseline's again where the fixed release's differs: module-level state set
    back after the apply (a constant rebound, a table restored). Only equality with the
    baseline counts: a value the application computes at run time, neither release's, was
    never held to the fixed one, and is not reported. Paths one release lacks are skipped:
    a deletion kept while old code still ran leaves its name bound on purpose."""
    entry = (_manifest(patch) or {}).get(name)
    if not isinstance(entry, dict) or not entry.get("verified"):
        return []
    ns = vars(module)
    as_name, root = state_names(name, module)
    lined = _fingerprint.lined_for(entry.get("lined"), "fixed")   # the fixed code is live
    back: List[str] = []
    for p in entry.get("paths") or ():
        base, fixed = p.get("baseline"), p.get("fixed")
        if base == fixed or "absent" in (base, fixed):
            continue
        try:
            now = _fingerprint.fingerprint_at(ns, as_name, _segments(p["path"]),
                                              root=root, lined=lined)
        except Exception:  # noqa: BLE001 - status must answer; an unreadable path is not proof
            continue
        if now == base:
            back.append(str(p.get("label", p["path"])))
    return back


def refusal(patch: Patch, verdicts: List[Verdict]) -> Optional[StateDiverges]:
    """The error for paths that do not equal the fixed release, or None."""
    bad = [(v.module, d) for v in verdicts for d in v.diverged]
    if not bad:
        return None
    shown = "; ".join(f"{m}.{label} is {live}, a fresh import of the fixed release has "
                      f"{expected}" for m, (label, live, expected) in bad[:3])
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    state = patch.meta.get("state")
    built = state.get("python") if isinstance(state, dict) else None
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    hint = (f" The state manifest was recorded with Python {built} and this process runs "
            f"{here}: values the standard library computes at import can differ between "
            f"versions; a patch built with `suture build --import-python` of Python {here} "
            "checks against this version." if isinstance(built, str) and built != here else "")
    return StateDiverges(
        f"Patch {patch.short_id} ({patch.describe()}) was rolled back: after the commit the "
        f"process's state does not equal a fresh import of the fixed release: {shown}{more}. "
        f"Nothing was changed; a restart runs the fixed release.{hint}",
        details={"patch": patch.id, "paths": [
            {"module": m, "path": label, "live": live, "expected": expected}
            for m, (label, live, expected) in bad[:50]]})


def _unbound(module: types.ModuleType, segments: List[_fingerprint.Segment],
             gone: AbstractSet[Tuple[int, Any]]) -> bool:
    """Whether a deferred deletion unbinds this path (or a path above it)."""
    if not gone:
        return False
    ns = vars(module)
    for n in range(len(segments)):
        parents = (ns, module) if n == 0 else (_fingerprint.value_at(ns, segments[:n]),)
        if any((id(parent), segments[n][1]) in gone for parent in parents):
            return True
    return False


def _segments(path: Any) -> List[_fingerprint.Segment]:
    return [(str(kind), key) for kind, key in path]
