"""Case 44: ``@typing.overload`` stubs are added in front of a changed method (Werkzeug
2.2.3's Request.get_json). The stubs are typing-only: the name is bound to the last
definition, whose code is swapped in place like any changed method (the bound method
taken before the patch sees the fix)."""


def setup():
    from c44_app import req

    r = req.Request("  {x}")
    return {"m": req, "bound": r.get_json}


def observe(state):
    out = {"bound": state["bound"](silent=True)}
    out["fresh"] = state["m"].Request(" {y}").get_json(silent=True)
    return out
