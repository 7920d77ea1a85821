"""Case 62: a method defined in a class-body ``if`` block whose *condition* is what the fix
changes. v1 tested for a function ``html`` does not have (``escape_attr``), so every
release used the fallback ``quote``, which does not escape quotes: attribute injection
(``" onmouseover="...``). v2 tests for ``html.escape``: the same method bodies, but now the
first branch defines ``Quoter.quote``. A fresh v2 import has the escaping ``quote``; so must
a patched process, for instances made before and after.
"""

PAYLOADS = ['plain', '" onmouseover="alert(1)', "<b>&'"]


def setup():
    from c62_app import render

    return {"m": render, "live": render.Quoter()}


def observe(state):
    m = state["m"]
    return {
        "attribute": [m.attribute("title", p) for p in PAYLOADS],
        "live_instance": [state["live"].quote(p) for p in PAYLOADS],
    }
