"""Case 44b: the baseline already has ``@typing.overload`` stubs, which typing (3.11+)
keeps alive in its overload registry. They are not the baseline's ``get_json`` and never
run: matching skips them instead of calling the module "not the baseline"."""


def setup():
    from c44b_app import req

    r = req.Request("  {x}")
    return {"m": req, "bound": r.get_json}


def observe(state):
    out = {"bound": state["bound"](silent=True)}
    out["fresh"] = state["m"].Request(" {y}").get_json(silent=True)
    return out
