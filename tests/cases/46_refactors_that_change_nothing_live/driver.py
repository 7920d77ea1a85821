"""Case 46: setuptools 70's refactorings that change nothing a live process needs redone.

* ``__import__("c46_app.legacy")`` removed, and the module ``legacy`` removed: nothing in
  the new version imports or names it, so the loaded module is simply kept (caveat);
* ``_state = {}`` -> ``_state: Dict[str, str] = {}``: the binding is the same, so the
  dict the process filled is kept (rebinding it would drop that state);
* a function changed inside ``try:/except ImportError:`` with a call in the handler: only
  the function's code is swapped, the block does not run again;
* a class-body loop whose variable is renamed (``name`` -> ``__name``): same effect.
"""


def setup():
    from c46_app import sandbox

    sandbox._state["kept"] = "yes"
    return {"m": sandbox, "classify": sandbox.classify}


def observe(state):
    m = state["m"]
    box = m.Sandbox()
    return {"classify": m.classify(" x "), "alias": state["classify"](" y "),
            "open": box.open(1), "stat": box.stat(2), "describe": box.describe(),
            "state": dict(m._state)}
