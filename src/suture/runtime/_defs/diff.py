"""The definition diff: one walk over both trees, each difference with its verdict.

Enters: the old and new trees of one module. Leaves: a ``ModulePlan`` (data): the
changes with their verdicts (``Change``), the module-level statements to evaluate
again, the names to rebind or delete, what to do to each class (``ClassPlan``), the
defaults to recompute. ``dependents`` says which definitions read a changed one.
Invariant: the builder and the engine get the same plan from the same sources.
Over 500 lines because ``_Differ`` is one walk: its methods share the two indexes of
the trees and add changes as they find them; the rules they consult are in
``verdicts`` and the facts in ``syntax``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .syntax import (FuncNode, _base_names, _called_roots, _declared_global,
                     _defaults_dump, _defines, _import_call, _import_map, _keyed, _names_in,
                     _shape, _text, _uses_class_cell, _uses_globals, annotation_readers,
                     annotations_dump, bound_names, deleted_names, dump, dumps,
                     iter_classes, iter_functions, mutated_root, normal_form, same_body,
                     stmt_category, touched_names, type_params_dump, unbound_at_end)
from .instances import (CallHazard, StateDelta, call_hazards, instance_deltas,
                        only_adds_state)
from .verdicts import (_FIELD_MARKERS, _LAYOUT_BUILTINS, _annotated_only, _annotation_only,
                       _annotations_are_metadata, _class_default, _class_kind, _field_order,
                       _fresh, _has_slots, _in_place, _is_field, _mentions, _never_runs,
                       _plain_dataclass, _replaced_by, _settable, import_objects)


@dataclass(frozen=True)
class Change:
    kind: str
    qualname: str
    verdict: str
    reason: str = ""


@dataclass
class ClassPlan:
    """What the engine does to one live class besides swapping code."""
    qualname: str
    exec_members: List[ast.stmt] = field(default_factory=list)   # run in an isolated body
    bind: List[str] = field(default_factory=list)                # names taken from that body
    delete: List[str] = field(default_factory=list)
    new_bases: Optional[List[ast.expr]] = None
    regenerate: bool = False    # a stdlib @dataclass whose fields change (_plain_dataclass)


@dataclass
class ModulePlan:
    changes: List[Change] = field(default_factory=list)
    exec_stmts: List[ast.stmt] = field(default_factory=list)     # module-level, source order
    bind: List[str] = field(default_factory=list)
    delete: List[str] = field(default_factory=list)
    classes: List[ClassPlan] = field(default_factory=list)
    recompute_defaults: List[str] = field(default_factory=list)  # qualnames
    future_flags: List[ast.stmt] = field(default_factory=list)
    instance_state: List[StateDelta] = field(default_factory=list)   # instances.py
    call_hazards: List[CallHazard] = field(default_factory=list)
    old_tree: Optional[ast.Module] = None   # parsed once; the engine compiles from these
    new_tree: Optional[ast.Module] = None

    @property
    def worst(self) -> str:
        order = ["live", "caveat", "hook", "restart"]
        return max((c.verdict for c in self.changes), key=order.index, default="live")




class _Differ:
    def __init__(self, old: ast.Module, new: ast.Module, modname: str,
                 old_lines: Optional[List[str]] = None,
                 new_lines: Optional[List[str]] = None) -> None:
        self.old = old
        self.new = new
        self.mod = modname
        self.old_lines, self.new_lines = old_lines, new_lines
        self.plan = ModulePlan()
        self.old_funcs = dict(iter_functions(old.body))
        self.new_funcs = dict(iter_functions(new.body))
        self.imports = _import_map(new.body)

    def add(self, kind: str, qualname: str, verdict: str, reason: str = "") -> None:
        self.plan.changes.append(Change(kind, qualname, verdict, reason))

    def run(self) -> ModulePlan:
        self._functions()
        self._module_level()
        self._objects()
        self._dependents()
        self.plan.future_flags = [s for s in self.new.body if stmt_category(s) == "future"]
        return self.plan

    # functions and methods at any depth: code swaps, defaults, __init__ attributes
    def _functions(self) -> None:
        for q, new in self.new_funcs.items():
            old = self.old_funcs.get(q)
            if old is None:
                continue  # additions are reported where they are bound
            if self._same_text(old, new):
                continue  # every comparison below is of parts of this text: all equal
            kind = "method" if self._in_class(q) else "function"
            if "<locals>" in q:
                kind = "nested function"
            if not same_body(old, new):
                reason = ""
                if isinstance(old, ast.AsyncFunctionDef) != isinstance(new, ast.AsyncFunctionDef):
                    reason = "changes between def and async def; callers see the new kind"
                self.add(f"changed {kind}", q, "caveat" if reason else "live", reason)
                if kind == "method" and _uses_class_cell(old) != _uses_class_cell(new):
                    self.add("method starts using super()" if _uses_class_cell(new) else
                             "method stops using super()", q, "caveat",
                             "its closure must gain or lose the __class__ cell: a new function "
                             "object takes the fix and the old one forwards to it, so every "
                             "reference sees it; the old object's signature reads "
                             "(*args, **kwargs)")
            # a def's own type parameters, or those of a class it is in (class C[T]:)
            annotations_changed = annotations_dump(old) != annotations_dump(new)
            generic = "<locals>" not in q and bool(
                getattr(old, "type_params", None) or getattr(new, "type_params", None)
                or any(getattr(c, "type_params", None) for c in self._enclosing(q)))
            if generic and (type_params_dump(old) != type_params_dump(new)
                            or annotations_changed):
                self.add("changed generic signature", q, "restart",
                         "the type parameters (PEP 695) or the annotations of a generic "
                         "function, or of a method of a generic class, change: its "
                         "__type_params__ and annotations come from a type-parameter "
                         "scope, which a live function cannot be given")
            elif annotations_changed and "<locals>" not in q:
                # the engine carries the function's own annotations (engine/_annotations.py),
                # not what a decorator built from them when the function was defined
                reads, may = annotation_readers(new, self.imports)
                if reads:
                    self.add("changed annotations read by a decorator", q, "hook",
                             f"{', '.join(reads)} read the annotations when the function "
                             "was defined (argument validation or conversion, dispatch on "
                             "the type) and keeps what it built from the old ones: a hook "
                             "must rebuild it, or restart")
                elif may:
                    self.add("changed annotations under a decorator", q, "caveat",
                             f"the function's annotations are replaced; if {', '.join(may)} "
                             "read them when the function was defined (as pydantic, FastAPI "
                             "and singledispatch do), what it built keeps the old ones")
            if _defaults_dump(old) != _defaults_dump(new):
                if "<locals>" in q:
                    self.add("changed default", q, "caveat",
                             "new closures get the new defaults; closures that already exist "
                             "keep the old ones")
                else:
                    self.add("changed default", q, "caveat",
                             "defaults are evaluated again at apply; the old default objects "
                             "are dropped")
                    self.plan.recompute_defaults.append(q)
            # a changed decorator is handled with the statement that binds the name
            # (module or class level)
        for q in self.new_funcs.keys() - self.old_funcs.keys():
            if "<locals>" in q:
                self.add("added nested function", q, "live")
        for q in self.old_funcs.keys() - self.new_funcs.keys():
            if "<locals>" in q:
                self.add("removed nested function", q, "live")

    # what exists before the patch: objects the old code built, frames of old callers
    def _objects(self) -> None:
        self.plan.instance_state = instance_deltas(self.old, self.new)
        for d in self.plan.instance_state:
            label = f"{d.cls}.{d.attr}"
            readers = ", ".join(f"{r}()" for r in d.readers)
            built = ("objects built before the patch" if d.direction == "apply"
                     else "objects built while the patch is applied, after a revert,")
            side = "fixed" if d.direction == "apply" else "vulnerable"
            side += " " + readers + (" reads" if len(d.readers) == 1 else " read")
            if d.how == "derived":
                self.add("instance state, derived" if d.direction == "apply"
                         else "instance state, derived at revert", label, "live",
                         f"the {side} `{d.attr}`; {built} get "
                         f"`{d.attr} = {d.value}` on their first read, as a new object "
                         f"does ({d.why})")
            else:
                self.add("instance state, needs migration" if d.direction == "apply"
                         else "instance state, needs migration at revert", label, "caveat",
                         f"the {side} `{d.attr}`, which {built} may lack "
                         f"({d.why}); while such objects are alive, "
                         + ("apply refuses unless MIGRATIONS" if d.direction == "apply"
                            else "revert refuses unless REVERT_MIGRATIONS")
                         + f"[\"{self.mod}:{d.cls}\"] sets it (SUT-E209)")
        self.plan.call_hazards = call_hazards(self.old, self.new, code_changed(self.plan),
                                            self.old_lines, (self.old_funcs, self.new_funcs))
        for h in self.plan.call_hazards:
            self.add("old caller, changed callee", f"{h.caller}->{h.callee}", "caveat",
                     f"a frame already running the old {h.caller}() would call the new "
                     f"{h.callee}() at line {h.line} and fail: it {h.why}; apply waits for "
                     "such frames to finish and refuses if they do not (SUT-E210)")

    def _same(self, cat: str, before: Optional[ast.stmt], stmt: ast.stmt, where: str) -> bool:
        """Nothing to run again: equal, or differing only in function bodies (swapped in
        place) or, for other statements, in the names of loop variables."""
        if before is None:
            return False
        if cat not in ("binding-block", "other", "mutation"):
            return dump(before) == dump(stmt)
        if _shape(before) == _shape(stmt):
            return True
        if cat != "binding-block" and normal_form(before) == normal_form(stmt):
            self.add("renamed loop variable", where, "live",
                     f"`{_text(stmt)}` does what it did under another variable name; the old "
                     "loop variable stays bound where the loop left it")
            return True
        return False

    def _same_text(self, old: FuncNode, new: FuncNode) -> bool:
        """The two definitions are the same lines of source text, decorators included (so
        their trees are equal): most functions of a module a fix touches, skipped without
        dumping their trees (apply time)."""
        if self.old_lines is None or self.new_lines is None:
            return False
        spans = []
        for fn in (old, new):
            first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            last = getattr(fn, "end_lineno", None)
            if last is None:
                return False
            spans.append((first - 1, last))
        (a0, a1), (b0, b1) = spans
        return a1 - a0 == b1 - b0 and self.old_lines[a0:a1] == self.new_lines[b0:b1]

    def _enclosing(self, q: str) -> List[ast.ClassDef]:
        """The classes (old and new) that ``q``'s qualified name puts it in."""
        parts = q.split(".")[:-1]
        if not parts:
            return []
        if not hasattr(self, "_classes"):
            self._classes = [*iter_classes(self.old.body), *iter_classes(self.new.body)]
        wanted = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        return [c for cq, c in self._classes if cq in wanted]

    def _in_class(self, q: str) -> bool:
        parent = q.rsplit(".", 1)[0] if "." in q else ""
        if not hasattr(self, "_new_classes"):
            self._new_classes = {cq for cq, _ in iter_classes(self.new.body)}
        return bool(parent) and "<locals>" not in q and parent in self._new_classes

    def _module_level(self) -> None:
        old_k, new_k = _keyed(self.old.body), _keyed(self.new.body)
        old_imports, new_imports = _import_map(self.old.body), _import_map(self.new.body)
        new_only = ({n for st in self.new.body for n in bound_names(st)}
                    - {n for st in self.old.body for n in touched_names(st)})
        self._new_only = new_only
        # ``del NAME`` at module level (a helper removed once used): names it leaves unbound
        old_unbound, new_unbound = unbound_at_end(self.old.body), unbound_at_end(self.new.body)
        self._del_names = new_unbound - old_unbound
        old_pairs = {(n, src) for st in self.old.body for n, src in _import_map([st]).items()}
        self._old_objects = import_objects(self.old.body)
        self._rebinds: Set[int] = set()   # bind what a removed ``del`` unbound (same code)
        execd: Set[int] = set()
        for key, stmt in new_k.items():
            before = old_k.get(key)
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            label = ", ".join(names) or key.split(":", 1)[-1][:60]
            if cat == "class":
                if before is None:
                    self.add("added class", stmt.name, "live")  # type: ignore[attr-defined]
                    execd.add(id(stmt))
                else:
                    self._class(stmt.name, before, stmt)  # type: ignore[arg-type, attr-defined]
                continue
            if cat == "def":
                if before is None:
                    self.add("added function", stmt.name, "live")  # type: ignore[attr-defined]
                    execd.add(id(stmt))
                elif dumps(before.decorator_list) != dumps(stmt.decorator_list):  # type: ignore[attr-defined]
                    self.add("changed decorator", stmt.name, "caveat",  # type: ignore[attr-defined]
                             "the definition is executed again and the name rebound; references "
                             "to the old decorated object elsewhere keep it, and anything the old "
                             "decorator registered stays registered")
                    execd.add(id(stmt))
                continue
            if cat == "import":
                # each statement on its own: ``import a`` and ``import a.b`` both bind ``a``
                fresh = [n for n, src in _import_map([stmt]).items() if (n, src) not in old_pairs]
                for n in fresh:
                    self.add("added import" if n not in old_imports else "changed import", n,
                             "live")
                if fresh or (_import_call(stmt) and before is None):
                    execd.add(id(stmt))
                continue
            if self._same(cat, before, stmt, label) or _annotated_only(before, stmt):
                continue
            inert = _never_runs(stmt, new_imports, self.new.body)
            if inert and (before is None or _never_runs(before, old_imports, self.old.body)):
                self.add("added code that never runs" if before is None else
                         "changed code that never runs", "<module>", "live",
                         f"`{_text(stmt)}`: {inert}")
                continue
            if cat == "future":
                if before is None:
                    self.add("added __future__ import", label, "restart",
                             "a __future__ import changes how the whole module compiles")
                continue
            if cat == "docstring":
                self.add("changed docstring", "__doc__", "live")
                execd.add(id(stmt))
                self.plan.bind.append("__doc__")
                continue
            if cat == "annotation":
                continue
            verb = "added" if before is None else "changed"
            if cat == "del":
                # Only ``del`` of plain names (syntax.deleted_names): its effect is that the
                # fixed module does not bind them. ``del`` of an attribute or item acts on an
                # object ("other", below); inside a class body ``del`` stays a class-body
                # statement (hook), as deleting ``__slots__`` or a member after the class's
                # layout, copyreg's cached ``__slotnames__`` and subclasses were made from
                # them is not undone by unbinding a name.
                gone_now = [n for n in deleted_names(stmt) if n in self._del_names]
                # qualname "<module>": a name here would read as a change of that function
                if gone_now:
                    self.add(f"{verb} module-level del", "<module>", "caveat",
                             f"`{_text(stmt)}`: a fresh import of the fixed version leaves "
                             f"{', '.join(gone_now)} unbound, so the patch unbinds "
                             f"{'it' if len(gone_now) == 1 else 'them'} (last, once no thread "
                             "runs the old code: statements the patch evaluates again still "
                             "read it, as at import); references held elsewhere keep the "
                             "object, and revert binds the name again")
                else:
                    self.add(f"{verb} module-level del", "<module>", "live",
                             f"`{_text(stmt)}`: the names it deletes are already unbound, or "
                             "bound again later in the module: nothing changes")
                continue
            if cat == "binding-block" and _defines(stmt):
                self.add(f"{verb} conditional definitions", label, "caveat",
                         "the block runs again: the functions and classes it defines are new "
                         "objects (changed code is also swapped into the old ones); instances "
                         "made before keep the old classes")
                execd.add(id(stmt))
                continue
            if cat in ("assign", "binding-block"):
                self.add(f"{verb} module constant", label, "caveat",
                         "rebound in this module and in modules that did `from ... import` "
                         "it; other references to the old value keep it")
                execd.add(id(stmt))
                continue
            if cat == "mutation" and mutated_root(stmt) in new_only:
                self.add(f"{verb} module statement", mutated_root(stmt), "caveat",
                         f"`{_text(stmt)}` acts on a name this patch creates: it runs once, "
                         "as at a fresh import of the fixed version")
                execd.add(id(stmt))
                continue
            if _settable(stmt):
                self.add(f"{verb} module statement", mutated_root(stmt), "caveat",
                         f"`{_text(stmt)}`: the value is computed while preparing and set in "
                         "the commit (revert restores the old one)")
                execd.add(id(stmt))
                continue
            self.add("added module statement" if before is None else "changed module statement",
                     "<module>", "hook",
                     f"`{_text(stmt)}`: module-level code with side effects cannot be re-run "
                     "safely; attach a hook that performs it (suture build --hooks)")
        for n in sorted(old_imports.keys() - new_imports.keys()):
            self.add("removed import", n, "live")
        for key, stmt in old_k.items():
            if key in new_k:
                continue
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            if cat == "import":
                continue
            inert = _never_runs(stmt, old_imports, self.old.body)
            if inert:
                self.add("removed code that never runs", "<module>", "live",
                         f"`{_text(stmt)}`: {inert}")
                continue
            if cat in ("def", "class"):
                self.add(f"removed {'class' if cat == 'class' else 'function'}", names[0],
                         "caveat", "the name is unbound; references held elsewhere keep the "
                         "old object")
            elif cat in ("assign", "binding-block", "docstring"):
                self.add("removed module constant", ", ".join(names) or key, "live")
            elif cat == "future":
                self.add("removed __future__ import", key, "restart",
                         "a __future__ import changes how the whole module compiles")
            elif cat == "del":
                self._removed_del(stmt, old_unbound, new_unbound, execd)
            elif _replaced_by(stmt, self.old.body, self.new.body)[0] is not None:
                new_stmt, why = _replaced_by(stmt, self.old.body, self.new.body)
                assert new_stmt is not None
                if why:
                    self.add("changed module statement", "<module>", "hook",
                             f"`{_text(stmt)}` becomes `{_text(new_stmt)}`, but {why}; attach "
                             "a hook that sets what the fixed version's import gives")
                else:
                    self.add("replaced module statement", mutated_root(stmt), "live",
                             f"`{_text(stmt)}` becomes `{_text(new_stmt)}`, which sets the same "
                             "target: its value is set in the commit, replacing the old "
                             "statement's effect; revert puts the old value back")
            else:
                self.add("removed module statement", "<module>", "hook",
                         f"`{_text(stmt)}`: the effect of module-level code that ran at import "
                         "cannot be undone automatically; attach a hook")
        new_bound = {n for s in self.new.body for n in bound_names(s)
                     if not _never_runs(s, new_imports, self.new.body)}
        old_bound = {n for s in self.old.body for n in bound_names(s)
                     if not _never_runs(s, old_imports, self.old.body)}
        gone = (old_bound - old_unbound) - (new_bound - new_unbound)
        values = {n for st in self.old.body if stmt_category(st) in ("assign", "binding-block")
                  for n in bound_names(st)}   # removed defs and classes are unbound anyway
        values -= self._del_names   # the fixed module deletes them itself
        kept = gone & values   # the walks of the whole tree only when a value is gone
        if kept and not _uses_globals(self.new):
            kept &= _declared_global(self.new)
        for n in sorted(kept):
            self.add("name bound at run time", n, "caveat",
                     "the fixed module no longer binds it at import, but its code binds "
                     "module globals at run time (`global`, `globals()`): it stays bound")
        self.plan.delete = sorted(gone - kept)
        self._execd = execd

    def _removed_del(self, stmt: ast.stmt, old_unbound: Set[str], new_unbound: Set[str],
                     execd: Set[int]) -> None:
        """A module-level ``del NAME`` the fix drops: the fixed module keeps the names bound,
        so the statement that binds each last is evaluated and the name bound (a def, a
        class, an assignment or an import: anything else needs a hook)."""
        back = [n for n in deleted_names(stmt) if n in old_unbound and n not in new_unbound]
        binders = {n: [s for s in self.new.body if n in bound_names(s)] for n in back}
        if not back:
            self.add("removed module-level del", "<module>", "live",
                     f"`{_text(stmt)}`: the fixed module still leaves them unbound")
            return
        bad = [n for n, ss in binders.items()
               if not ss or stmt_category(ss[-1]) not in ("def", "class", "assign", "import")]
        if bad:
            self.add("removed module-level del", "<module>", "hook",
                     f"`{_text(stmt)}`: the fixed module keeps {', '.join(bad)} bound, by "
                     "statements that cannot be evaluated again on their own; attach a hook")
            return
        for ss in binders.values():
            execd.add(id(ss[-1]))
            self._rebinds.add(id(ss[-1]))
        self.add("removed module-level del", "<module>", "caveat",
                 f"`{_text(stmt)}`: the fixed module keeps {', '.join(back)} bound: the "
                 "statement that binds each is evaluated again and the name bound, a new "
                 "object as at a fresh import")

    def _class(self, q: str, old: ast.ClassDef, new: ast.ClassDef) -> None:
        cp = ClassPlan(q)
        kind = _class_kind(new)
        if dumps(old.keywords) != dumps(new.keywords):
            self.add("changed class keywords", q, "restart",
                     "the metaclass or class keywords changed; the class object itself "
                     "would have to be rebuilt")
        if dumps(old.decorator_list) != dumps(new.decorator_list):
            self.add("changed class decorator", q, "hook",
                     "class decorators cannot be re-run on the live class; attach a hook")
        if dumps(old.bases) != dumps(new.bases):
            grown = _base_names(new) - _base_names(old)
            slotted = {n for n in grown if _has_slots(self.new.body, n)}
            if not (_base_names(old) - {"object"}):
                self.add("changed class bases", q, "restart",
                         "the class had no base but object; CPython refuses to give such a "
                         "class other bases in place ('deallocator differs from object')")
            elif grown & _LAYOUT_BUILTINS or slotted or _class_kind(old) != kind:
                self.add("changed class bases", q, "restart",
                         f"new base {', '.join(sorted((grown & _LAYOUT_BUILTINS) | slotted)) or 'kind'} "
                         "changes the instance layout")
            else:
                self.add("changed class bases", q, "caveat",
                         "__bases__ is assigned in place; refused at apply if the instance "
                         "layouts are incompatible")
                cp.new_bases = list(new.bases)
        metadata = kind == "fields" and (
            _annotations_are_metadata(old, _import_map(self.old.body))
            and _annotations_are_metadata(new, _import_map(self.new.body)))
        # The standard library's @dataclass generates its methods from the class body: the
        # engine runs the new body and decorator on a scratch class and moves the generated
        # methods, the field table and the defaults onto the live class.
        regen = ("." not in q and _plain_dataclass(old, _import_map(self.old.body))
                 and _plain_dataclass(new, _import_map(self.new.body))
                 and dumps(old.decorator_list) == dumps(new.decorator_list))
        if kind == "fields":
            before_order, after_order = _field_order(old), _field_order(new)
            kept = set(before_order) & set(after_order)
            if [n for n in before_order if n in kept] != [n for n in after_order if n in kept]:
                self.add("reordered fields", q, "restart",
                         "field order fixes the positional parameters of __init__ (and the "
                         "items of a NamedTuple)")
        old_k, new_k = _keyed(old.body), _keyed(new.body)
        for key, stmt in new_k.items():
            before = old_k.get(key)
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            mq = f"{q}.{names[0]}" if names else q
            if cat == "class":
                if before is None:
                    self.add("added class", mq, "live")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                else:
                    self._class(mq, before, stmt)  # type: ignore[arg-type]
                continue
            if cat == "def":
                if before is None:
                    self.add("added method", mq, "live")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                elif dumps(before.decorator_list) != dumps(stmt.decorator_list):  # type: ignore[attr-defined]
                    self.add("changed decorator", mq, "caveat",
                             "the method is defined again and rebound on the class; references "
                             "to the old decorated object elsewhere keep it")
                    cp.exec_members.append(stmt)
                    cp.bind.extend(names)
                continue
            if self._same(cat, before, stmt, mq):
                continue
            if "__slots__" in names:
                self.add("changed __slots__", mq, "restart",
                         "instances have a fixed layout; existing instances cannot gain or "
                         "lose slots")
            elif kind == "enum" and cat == "assign":
                self.add("changed enum member", mq, "restart",
                         "Enum members are singletons created with the class")
            elif (kind == "fields" and cat in ("assign", "annotation") and before is not None
                  and metadata and _annotation_only(before, stmt)):
                self.add("changed field annotation", mq, "caveat",
                         "only the type annotation changed: __init__, the default and the "
                         "instance layout are the same; the class's __annotations__ (and "
                         "dataclasses.fields().type) keep the old annotation")
            elif regen and cat in ("assign", "annotation") and not _is_field(stmt) \
                    and (before is None or not _is_field(before)):
                self.add("changed class attribute" if before else "added class attribute",
                         mq, "live")   # no annotation: a plain class attribute, not a field
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
            elif regen and cat in ("assign", "annotation") and not (
                    _mentions(stmt.annotation if isinstance(stmt, ast.AnnAssign) else None,
                              _FIELD_MARKERS)
                    or before is not None and _mentions(getattr(before, "annotation", None),
                                                        _FIELD_MARKERS)):
                cp.regenerate = True
                if before is None and not _class_default(stmt):
                    self.add("added field", mq, "hook",
                             f"instances made before the patch have no `{names[0]}` and the "
                             "field has no plain default for them to fall back on; attach a "
                             "migration hook (MIGRATIONS) that gives them the value the old "
                             "code meant")
                else:
                    self.add("added field" if before is None else "changed field", mq,
                             "caveat", "the dataclass is generated again (__init__, __repr__, "
                             "__eq__, fields(), defaults) on the live class; instances made "
                             "before keep the field values they have")
            elif kind == "fields" and cat in ("assign", "annotation"):
                self.add("changed field", mq, "restart",
                         "dataclass/attrs/NamedTuple fields fix __init__ and the layout of "
                         "every instance")
            elif cat in ("assign", "import", "binding-block"):
                self.add("changed class attribute" if before else "added class attribute",
                         mq, "live")
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
            elif cat in ("docstring", "annotation", "pass"):
                continue
            else:
                self.add("changed class body statement", f"{q}.<body>", "hook",
                         f"`{_text(stmt)}`: class-body code other than definitions and assignments cannot be "
                         "re-run on the live class")
        for key, stmt in old_k.items():
            if key in new_k:
                continue
            cat = stmt_category(stmt)
            names = bound_names(stmt)
            mq = f"{q}.{names[0]}" if names else q
            if "__slots__" in names:
                self.add("removed __slots__", mq, "restart", "instances have a fixed layout")
            elif kind == "enum" and cat == "assign":
                self.add("removed enum member", mq, "restart",
                         "Enum members are singletons created with the class")
            elif regen and cat in ("assign", "annotation") and _is_field(stmt) \
                    and not _mentions(getattr(stmt, "annotation", None), _FIELD_MARKERS):
                cp.regenerate = True
                self.add("removed field", mq, "caveat",
                         "the dataclass is generated again without it; instances made before "
                         "keep the attribute")
            elif kind == "fields" and cat in ("assign", "annotation"):
                self.add("removed field", mq, "restart",
                         "dataclass/attrs/NamedTuple fields fix __init__ and the layout")
            elif cat in ("def", "class", "assign", "import", "binding-block"):
                self.add(f"removed {'method' if cat == 'def' else 'class attribute'}", mq,
                         "live" if cat != "def" else "caveat",
                         "" if cat != "def" else "references held elsewhere keep the old method")
            elif cat not in ("docstring", "annotation", "pass"):
                self.add("removed class body statement", f"{q}.<body>", "hook",
                         f"`{_text(stmt)}`: class-body code that ran at import cannot be undone automatically")
        new_bound = {n for s in new.body for n in bound_names(s)}
        old_bound = {n for s in old.body for n in bound_names(s)}
        cp.delete = sorted(old_bound - new_bound)
        # A method's default that reads a class attribute the patch rebinds (urllib3 2.2.2:
        # ``remove_headers_on_redirect=DEFAULT_REMOVE_HEADERS_ON_REDIRECT``) follows it.
        rebound = {n for m in cp.exec_members if stmt_category(m) != "def"
                   for n in bound_names(m)}
        for m in new.body:
            mq = f"{q}.{getattr(m, 'name', '')}"
            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and mq not in self.plan.recompute_defaults \
                    and _names_in([*m.args.defaults, *m.args.kw_defaults]) & rebound:
                self.plan.recompute_defaults.append(mq)
                self.add("re-evaluated default", mq, "caveat",
                         "a default argument reads a class attribute the patch changes")
        if cp.regenerate:
            # module code that builds instances at import is evaluated again (_dependents)
            self.add("regenerated __init__", f"{q}.__init__", "caveat",
                     "generated by @dataclass from the new fields")
        if cp.exec_members or cp.delete or cp.new_bases is not None or cp.regenerate:
            self.plan.classes.append(cp)

    def _dependents(self) -> None:
        """Module-level assignments that must be evaluated again (case: DEFAULT = Policy(3)).

        An unchanged assignment is re-evaluated when its value calls something whose
        construction changed (a changed function, or a class whose __init__/__new__/
        __post_init__/bases changed) or reads a name this patch rebinds. Classes whose
        other methods changed do not count: re-creating ``SESSIONS = Store()`` because
        ``Store.get`` changed would throw away live state for nothing.
        """
        changed_q = {c.qualname for c in self.plan.changes if c.verdict != "restart"}
        construct: Set[str] = set()
        for q in changed_q:
            head, _, tail = q.partition(".")
            if not tail:
                construct.add(head)
            elif tail == "__init__" and only_adds_state(
                    self.old_funcs.get(q), self.new_funcs.get(q), self.plan.instance_state,
                    head, head.rsplit(".", 1)[-1]):
                continue   # objects built by the old __init__ are kept (engine/_objects)
            elif tail in ("__init__", "__new__", "__post_init__", "__call__"):
                construct.add(head)
        for cp in self.plan.classes:
            if cp.new_bases is not None:
                construct.add(cp.qualname.split(".")[0])
        execd = self._execd
        rebound: Set[str] = set()
        for s in self.new.body:
            if id(s) in execd and stmt_category(s) not in ("def", "class") \
                    and id(s) not in self._rebinds:
                rebound.update(bound_names(s))
        constants = set(rebound)   # rebound by the patch's own statements, known before commit
        reasons: Dict[int, str] = {}
        grew = True
        while grew:
            grew = False
            for s in self.new.body:
                if id(s) in execd or not (stmt_category(s) == "assign" or _settable(s)):
                    continue
                value = s.value  # type: ignore[attr-defined]
                why = sorted(_called_roots(value) & construct) or sorted(_names_in([value]) & rebound)
                if why:
                    execd.add(id(s))
                    names = bound_names(s) or [_text(s).split("=")[0].strip()]
                    rebound.update(bound_names(s))
                    reasons[id(s)] = ", ".join(why)
                    self.add("re-evaluated module constant", ", ".join(names), "caveat",
                             f"built at import from {reasons[id(s)]}, which the patch changes; "
                             "the module gets a new object like a fresh import would, and "
                             "references to the old object elsewhere keep it")
                    grew = True
        self._import_time_readers(execd, constants)
        # unchanged top-level defaults that read a rebound name are evaluated again
        for q, fn in self.new_funcs.items():
            if "<locals>" in q or q in self.plan.recompute_defaults:
                continue
            if _names_in([*fn.args.defaults, *fn.args.kw_defaults]) & rebound:
                self.plan.recompute_defaults.append(q)
                self.add("re-evaluated default", q, "caveat",
                         "a default argument reads a constant the patch changes")
        self._class_attr_dependents(constants)
        self._whole_chains(self.new.body, execd, self._new_only, "<module>")
        new_classes, old_classes = dict(iter_classes(self.new.body)), dict(iter_classes(self.old.body))
        for cp in self.plan.classes:
            body = new_classes[cp.qualname].body
            chosen = {id(m) for m in cp.exec_members}
            old_names = {n for st in old_classes[cp.qualname].body for n in touched_names(st)} \
                if cp.qualname in old_classes else set()
            new_only = {n for st in body for n in bound_names(st)} - old_names
            self._whole_chains(body, chosen, new_only, f"{cp.qualname}.<body>")
            cp.exec_members = [m for m in body if id(m) in chosen]
            cp.bind = list(dict.fromkeys([*cp.bind, *(n for m in cp.exec_members
                                                      for n in bound_names(m))]))
        self.plan.exec_stmts = [s for s in self.new.body if id(s) in execd]
        self.plan.bind = sorted(set(self.plan.bind) | {
            n for s in self.plan.exec_stmts for n in bound_names(s)})
        # A name the batch binds is not deleted, unless the fixed module deletes it after
        # binding it (``del``): the deletion is deferred past the commits that bind it.
        self.plan.delete = [n for n in self.plan.delete
                            if n not in self.plan.bind or n in self._del_names]


    def _import_time_readers(self, execd: Set[int], constants: Set[str]) -> None:
        """Unchanged module-level code that called, at import, a function reading a constant
        the patch changes (requests 2.32: ``_init()`` fills ``codes`` from ``_codes``).

        Its effect was computed from the old value and nothing redoes it: running it again
        would act on live objects (not undoable), so a human decides, in a hook.
        """
        data = {n for st in self.new.body if id(st) in execd
                and stmt_category(st) in ("assign", "binding-block", "mutation")
                for n in bound_names(st)} & constants   # not imports: the same modules
        reads: Dict[str, Set[str]] = {}
        grew = bool(data)
        while grew:
            grew = False
            for st in self.new.body:
                if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                used = _names_in(st.body)
                got = (used & data).union(*(reads[r] for r in used & set(reads)))
                if got and got != reads.get(st.name):
                    reads[st.name] = got
                    grew = True
        for st in self.new.body:
            if id(st) in execd or stmt_category(st) in ("def", "class", "import", "future"):
                continue
            called = sorted(_called_roots(st) & set(reads))
            if called:
                read = sorted(set().union(*(reads[c] for c in called)))
                self.add("import-time call of changed data", "<module>", "hook",
                         f"`{_text(st)}` ran at import and called {', '.join(called)}, which "
                         f"reads {', '.join(read)} that the patch changes; its effect is not "
                         "redone automatically (it acts on live objects): attach a hook that "
                         "redoes it, or says why nothing needs doing")

    def _whole_chains(self, body: List[ast.stmt], chosen: Set[int], new_only: Set[str],
                      where: str) -> None:
        """Run every statement that builds a name when one of them runs (in place, ``chosen``).

        ``DECODERS = [...]`` then ``if HAS_X: DECODERS += ["x"]``: running the changed
        ``+=`` alone would extend the live list a second time. Running the chain from its
        first statement builds a new object as a fresh import does. That is only safe when
        the first statement makes the object right there (a display, a def); otherwise the
        chain would repeat its changes on a shared object, which needs a hook.
        """
        grew = True
        while grew:
            grew = False
            for s in body:
                if id(s) not in chosen:
                    continue
                for n in sorted(touched_names(s)):
                    if n not in bound_names(s) and (_settable(s) or not _in_place(s, n)):
                        continue  # an attribute/item set is an op on the live object
                    if where == "<module>" and any(
                            m == n for m, _ in import_objects([s]) & self._old_objects):
                        continue  # binds the object the old import bound: builds nothing
                    chain = [t for t in body if n in touched_names(t)]
                    if len(chain) < 2 or not any(_in_place(t, n) for t in chain):
                        continue
                    if n not in new_only and not _fresh(chain[0], n):
                        self.add("changed module statement" if where == "<module>" else
                                 "changed class body statement", where, "hook",
                                 f"`{n}` is built by several statements and the first, "
                                 f"`{_text(chain[0])}`, does not make a new object: running "
                                 "them again would repeat their changes on the live one")
                        continue
                    for t in chain:
                        if id(t) not in chosen:
                            chosen.add(id(t))
                            grew = True
                            self.add("re-run statement", f"{where}:{n}", "caveat",
                                     f"`{_text(t)}` runs again with the changed statements "
                                     f"that build `{n}`, so the new object is whole")

    def _class_attr_dependents(self, constants: Set[str]) -> None:
        """Class attributes computed from a changed constant (``limit = MAX_LEN``) follow it."""
        if not constants:
            return
        plans = {cp.qualname: cp for cp in self.plan.classes}
        old_classes = dict(iter_classes(self.old.body))
        for q, cls in iter_classes(self.new.body):
            if q not in old_classes:
                continue  # a new class is built from the new constants anyway
            cp = plans.get(q)
            for stmt in cls.body:
                if stmt_category(stmt) != "assign" or (cp and stmt in cp.exec_members):
                    continue
                if not _names_in([stmt.value]) & constants:  # type: ignore[attr-defined]
                    continue
                if cp is None:
                    cp = plans[q] = ClassPlan(q)
                    self.plan.classes.append(cp)
                names = bound_names(stmt)
                cp.exec_members.append(stmt)
                cp.bind.extend(names)
                self.add("re-evaluated class attribute", f"{q}.{', '.join(names)}", "caveat",
                         "computed in the class body from a constant the patch changes; "
                         "instances that set their own value keep it")


@dataclass
class Dependents:
    """What an unchanged module computed at import from names that are now rebound."""
    stmts: List[ast.stmt] = field(default_factory=list)                  # module-level assigns
    defaults: List[Tuple[str, FuncNode]] = field(default_factory=list)   # (qualname, def)
    class_attrs: List[Tuple[str, ast.stmt]] = field(default_factory=list)
    names: Set[str] = field(default_factory=set)                         # names they rebind


def dependents(tree: ast.Module, changed: Set[str]) -> Dependents:
    """Module-level assignments, defaults and class attributes that read ``changed`` names.

    Used for modules the patch does not touch but that did ``from m import X``
    and computed something from X at import (``HARD_CAP = MAX_UPLOAD * 2``,
    ``def accept(size, cap=MAX_UPLOAD)``): a fresh process of the fixed version
    computes them from the new X.
    """
    out = Dependents()
    names = set(changed)
    grew = True
    while grew:
        grew = False
        for s in tree.body:
            if s in out.stmts or stmt_category(s) != "assign":
                continue
            if _names_in([s.value]) & names:  # type: ignore[attr-defined]
                out.stmts.append(s)
                bound = bound_names(s)
                names.update(bound)
                out.names.update(bound)
                grew = True
    out.stmts.sort(key=lambda s: tree.body.index(s))
    for q, fn in iter_functions(tree.body):
        if "<locals>" not in q and _names_in([*fn.args.defaults, *fn.args.kw_defaults]) & names:
            out.defaults.append((q, fn))
    for q, cls in iter_classes(tree.body):
        for stmt in cls.body:
            if stmt_category(stmt) == "assign" and _names_in([stmt.value]) & names:  # type: ignore[attr-defined]
                out.class_attrs.append((q, stmt))
    return out


def code_changed(plan: ModulePlan) -> Set[str]:
    """Qualnames of the functions and methods whose code or defaults the plan changes (a
    default removed rejects calls as a parameter added does)."""
    return {c.qualname for c in plan.changes
            if c.kind in ("changed function", "changed method", "changed nested function",
                          "changed default")}


def _lines(source: str) -> List[str]:
    """Source lines as the parser numbers them: ``\r\n`` and ``\r`` end a line too, and
    nothing else does (``str.splitlines`` also splits at form feeds and other characters
    the parser reads as whitespace, which would shift the numbering)."""
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def diff_module(old_source: str, new_source: str, modname: str = "") -> ModulePlan:
    """Classify every definition-level change between two versions of one module."""
    old = ast.parse(old_source)
    new = ast.parse(new_source)
    plan = _Differ(old, new, modname, _lines(old_source), _lines(new_source)).run()
    plan.old_tree, plan.new_tree = old, new
    return plan


def added_module_plan(source: str) -> ModulePlan:
    ast.parse(source)
    return ModulePlan(changes=[Change("added module", "", "live")])
