"""Case 39: the fix adds a function and a class whose body reads it (gunicorn 22's
HeaderMap setting and validate_header_map_behaviour, found by the CVE harness), plus
comprehensions that call the new function. Class bodies and comprehensions are scopes
of their own: evaluated in scratch, they must still see the batch's new names.
(Not covered yet: a new function *called* during the batch whose own body reads another
new global; see docs/engine.md Limits.)"""


def setup():
    from c39_app import settings

    return {"m": settings}


def observe(state):
    m = state["m"]
    out = {"workers": m.check("workers", "4"), "drop": None, "bad": None,
           "settings": sorted(m.SETTINGS)}
    try:
        out["drop"] = m.check("header_map", "drop")
        m.check("header_map", "keep")
    except ValueError as exc:
        out["bad"] = str(exc)
    hm = getattr(m, "HeaderMap", None)
    out["header_map"] = None if hm is None else [hm.choices, hm.doc]
    return out
