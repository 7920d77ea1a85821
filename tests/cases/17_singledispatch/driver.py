"""Case 17: singledispatch: the int implementation changes and v2 registers one for bytes.

setup() dispatches every type once, so the dispatch cache is warm before the patch.
After revert the bytes registration must be gone again (bytes fall back to str()).
"""

VALUES = [5, -1, 2 ** 40, True, "a\r\nb", b"x\r\nSet-Cookie: y", 1.5]


def _render(headers, value):
    try:
        return headers.render("X", value)
    except ValueError as exc:
        return "error: %s" % exc


def setup():
    from c17_app import headers

    for v in VALUES:
        _render(headers, v)
    return {"headers": headers, "dispatch": headers.header_value}


def observe(state):
    h = state["headers"]
    return {
        "render": [_render(h, v) for v in VALUES],
        "held": [state["dispatch"](v) for v in ("s", 7, b"\n")],
        "impl_for_bytes": h.header_value.dispatch(bytes).__name__,
    }
