"""Case 42b: requests 2.32.0's status_codes. ``_init()`` ran at import and filled ``codes``
from ``_codes``; the patch changes ``_codes``. Rebinding ``_codes`` alone would leave
``codes`` without the new names (a silent half-patch), and running ``_init()`` again acts
on a live object: the builder asks for a hook, and the engine refuses without one."""


def setup():
    from c42b_app import codes

    return {"m": codes}


def observe(state):
    return {"too_early": getattr(state["m"].codes, "too_early", None)}
