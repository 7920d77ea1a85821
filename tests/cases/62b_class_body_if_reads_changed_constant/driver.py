"""Case 62b: which method a class-body ``if`` defines depends on a module constant that
the fix flips (``STRICT_QUOTING = False`` -> ``True``); the text of the ``if`` blocks does
not change. The class attribute read from the constant (``strict = STRICT_QUOTING``) is
re-evaluated (case 31), but the branch taken is not: the live ``Quoter.quote`` stays the
non-quoting fallback (attribute injection, ``" onmouseover="...``) while apply says
"applied". The same shape at module level (``if STRICT_QUOTING: def quote_text``) is
observed too. A fresh v2 import defines the escaping functions.
"""

PAYLOADS = ['plain', '" onmouseover="alert(1)', "<b>&'"]


def setup():
    from c62b_app import render

    return {"m": render, "live": render.Quoter()}


def observe(state):
    m = state["m"]
    return {
        "strict": m.Quoter.strict,
        "attribute": [m.attribute("title", p) for p in PAYLOADS],
        "live_instance": [state["live"].quote(p) for p in PAYLOADS],
        "module_level": [m.quote_text(p) for p in PAYLOADS],
    }
