"""Case 71 (found by tests/generated/gen.py, seed 422): case 69 where the two releases bind
*different* defs that start on the *same* line. The fix flips the condition of a class-body
``if`` (v1 binds the second ``def quote``, v2 the first) and adds lines to the module
docstring, so that v2's first ``def`` starts on line 11, where v1's second one does. A state
manifest that told the defs of one name apart by their line alone saw no difference
(``Quoter.quote`` at line 11 in both releases): the engine then mapped the live function to
the fixed release's def at the same position, the non-escaping one, and a bound method
taken before the patch kept quoting nothing. Told apart by their ordinal among the defs of
the name as well, v1's is the 2nd and v2's the 1st: the manifest records the path, and the
patched process runs the escaping ``quote`` everywhere, as a fresh v2 import does.
"""

PAYLOADS = ['plain', '" onmouseover="alert(1)', "<b>&'"]


def setup():
    from c71_app import render

    live = render.Quoter()
    return {"m": render, "live": live, "bound": live.quote}


def observe(state):
    m = state["m"]
    return {
        "attribute": [m.attribute("title", p) for p in PAYLOADS],
        "new_instance": [m.Quoter().quote(p) for p in PAYLOADS],
        "live_instance": [state["live"].quote(p) for p in PAYLOADS],
        "kept_bound_method": [state["bound"](p) for p in PAYLOADS],
    }
