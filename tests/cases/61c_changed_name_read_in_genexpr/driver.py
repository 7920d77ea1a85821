"""Case 61c: the sibling of case 61 that fails *open*. ``ALLOWED = frozenset(s for s in
_SCHEMES if s not in _BLOCKED)`` is unchanged text; the fix changes ``_BLOCKED`` (an
existing name, no longer empty). The engine evaluates ALLOWED again because it reads a
changed constant, but the generator's body reads ``_BLOCKED`` through the module's
globals, where the *old* value still is until the commit: the recomputed ALLOWED is
the vulnerable one, and apply says "applied". A fresh v2 import refuses ``javascript:``
and ``data:`` links; so must a patched process.
"""

URLS = ["https://example.org", "javascript:alert(1)", " JavaScript:alert(1)",
        "data:text/html,<script>", "ftp://x", "mailto:a@b", "/relative"]


def setup():
    from c61c_app import links

    return {"m": links}


def observe(state):
    m = state["m"]
    return {
        "allowed": sorted(m.ALLOWED),
        "blocked": sorted(m._BLOCKED),
        "safe": [m.is_safe(u) for u in URLS],
    }
