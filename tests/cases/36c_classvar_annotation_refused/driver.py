"""Case 36c: an annotation-only change that is not metadata: dropping ClassVar makes
`cap` a field (a new __init__ parameter), so it needs a restart."""

import dataclasses


def setup():
    from c36c_app import cfg

    return {"m": cfg}


def observe(state):
    m = state["m"]
    try:
        two = m.describe(m.Limits("b", 5))
    except TypeError:
        two = "TypeError"
    return {"d": m.describe(m.Limits("a")), "two": two,
            "fields": [f.name for f in dataclasses.fields(m.Limits)]}
