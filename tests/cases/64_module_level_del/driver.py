"""Case 64: a module-level ``del`` statement. The fix changes the helper that builds a
lookup table at import (CR and LF, and DEL, are now forbidden in header values: header
injection / response splitting), and, like much of the standard library, deletes the
helper once the table is built (``del _build_forbidden``). A fresh v2 import has the new
table and no ``_build_forbidden``; a patched process must have the same.
"""

VALUES = ["text/html", "a\tb", "x\r\nSet-Cookie: evil=1", "bad\x7f", "nul\x00"]


def setup():
    from c64_app import headers

    return {"m": headers}


def observe(state):
    m = state["m"]
    return {
        "valid": [m.valid_value(v) for v in VALUES],
        "has_helper": hasattr(m, "_build_forbidden"),
        "table_size": len(m._FORBIDDEN),
    }
