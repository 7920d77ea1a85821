"""Case 67 (found by tests/generated/gen.py, pattern "cond-def-kept-ref"): case 62 with a
*bound method* kept from before the patch. The fix flips the condition of a class-body
``if``, so the method that a fresh v2 import binds is the other branch's ``def`` (same
qualified name, other lines). Instances and new lookups get it after the apply, but a bound
method taken before (a callback registered at start-up: ``escape = Quoter().quote``) still
runs the v1 branch: a fresh v2 process would run the escaping one.
"""

PAYLOADS = ['plain', '" onmouseover="alert(1)', "<b>&'"]


def setup():
    from c67_app import render

    live = render.Quoter()
    return {"m": render, "live": live, "bound": live.quote}


def observe(state):
    m = state["m"]
    return {
        "new_instance": [m.Quoter().quote(p) for p in PAYLOADS],
        "live_instance": [state["live"].quote(p) for p in PAYLOADS],
        "kept_bound_method": [state["bound"](p) for p in PAYLOADS],
    }
