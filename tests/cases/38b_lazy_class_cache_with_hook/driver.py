"""Case 38b: case 38 with the hook it asks for: post_apply and post_revert recompute the
lazily compiled ``_compiled`` of the classes that inherit the changed ``rules``."""

TEXT = "a=1 key b:2 Z"


def setup():
    from c38b_app import lexers

    # instantiate everything first: the caches are filled before the patch
    return {"m": lexers, "live": [lexers.PropertiesLexer(), lexers.StrictProperties(),
                                  lexers.OwnRules()]}


def observe(state):
    m = state["m"]
    return {
        "live": [lx.kinds(TEXT) for lx in state["live"]],
        "new": [cls().kinds(TEXT) for cls in (m.PropertiesLexer, m.StrictProperties, m.OwnRules)],
    }
