"""Definition-level diff of two versions of one module: the single source of truth.

The builder (tooling) calls ``diff_module`` to classify changes and write the
report; the engine calls the same function on the patch's own baseline and
fixed sources at apply time to decide what to execute and rebind. Both halves
therefore agree by construction, and a patch cannot smuggle in an action the
sources do not justify.

Only ``ast`` is used here, never ``compile``/``exec``: nothing in this package
runs patch code. Four modules, each importing only the ones before it:

  syntax    facts about statements and definitions: what a statement binds or
            mutates, its category, functions and classes by qualname, dumps
  verdicts  the rules a verdict rests on: which class kinds, fields, annotations,
            defaults and module-level statements can change live and which cannot
  instances what exists before a patch: instance state each side's methods read that
            objects the other side built may lack, and old callers of changed callees
  diff      the walk over both trees (``diff_module``): each difference becomes a
            ``Change`` with its verdict, and the ``ModulePlan`` the engine executes

Enters: two module sources (or trees). Leaves: a ``ModulePlan`` (data).
Verdicts, from best to worst:
  live     patchable as is
  caveat   patchable, with a stated limit (the reason says which)
  hook     needs a human-written hook (``suture build --hooks``)
  restart  cannot be applied to live objects; a restart is required
"""

from __future__ import annotations

from .diff import (Change, ClassPlan, Dependents, ModulePlan, added_module_plan, code_changed,
                   dependents, diff_module)

__all__ = ["diff_module", "added_module_plan", "dependents", "code_changed",
           "Change", "ClassPlan", "ModulePlan", "Dependents"]
