"""Case 41: the shapes of urllib3 2.2.2 (CVE-2024-37891) and requests 2.32.0.

* a class attribute built by several statements (``DECODERS = [...]`` then
  ``if ...: DECODERS += [...]``) whose conditional part changes: the whole chain runs
  again on a new list, never ``+=`` on the live one;
* a changed class attribute read by a method's default (``remove=HEADERS``) and an
  instance built from it at import (``Policy.DEFAULT = Policy(3)``, an attribute set
  that becomes an undoable op of the commit);
* a try/else block with a nested if (binding only) and an ``if`` block defining a
  function whose condition is respelled (the alias taken before still gets the fix);
* bases respelled to the same objects (``TypedDict`` -> ``typing.TypedDict``);
* a new module object configured by a statement after it (``_context.load(...)``).
"""


def setup():
    from c41_app import policy

    return {"m": policy, "decoders": policy.Policy.DECODERS, "fallback": policy.fallback}


def observe(state):
    m = state["m"]
    return {
        "decoders": list(m.Policy.DECODERS),
        "default": m.Policy.DEFAULT.describe(),
        "new_instance": m.Policy().describe(),
        "fallback": m.fallback(),
        "fallback_alias": state["fallback"](),
        "options_bases": [b.__name__ for b in m.Options.__bases__],
        "context": m.context_state(),
    }


def after_apply(state, runtime):
    # the class got a new list; the one it had was not extended in place
    assert state["decoders"] == ["gzip", "deflate"], state["decoders"]
    assert state["m"].Policy.DECODERS is not state["decoders"]


def after_revert(state, runtime):
    assert state["m"].Policy.DECODERS is state["decoders"]
