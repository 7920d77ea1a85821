"""Case 42b: requests 2.32.0's status_codes. ``_init()`` ran at import and filled ``codes``
from ``_codes``; the patch changes ``_codes``. Rebinding ``_codes`` alone would leave
``codes`` without the new names (a silent half-patch), and running ``_init()`` again acts
on a live object. The builder would ask for a hook; the state manifest carries the new
attributes of ``codes`` as literals and a dry run shows that setting them leaves the whole
process equal to a fresh import of the fixed release, so the patch applies without one
(docs/engine.md, "Verdicts": derived effects)."""


def setup():
    from c42b_app import codes

    return {"m": codes}


def observe(state):
    return {"too_early": getattr(state["m"].codes, "too_early", None)}
