"""Case 61: a changed module-level expression reads names the same patch newly binds,
from inside a generator expression (``ALLOWED = frozenset(s.lower() for s in
_SAFE_SCHEMES if s.lower() not in _BLOCKED)``, both names new in v2): the outermost
iterable is read in the statement's own scope, the condition inside the generator's
body, through the module's globals, where the new names exist only after the commit.
The fix removes ``javascript:``/``data:``/``ftp:`` from the link allow-list (an XSS fix in
the style of bleach/markdown sanitizers). A patched process must refuse those links.
"""

URLS = ["https://example.org", "javascript:alert(1)", " JavaScript:alert(1)",
        "data:text/html,<script>", "ftp://x", "mailto:a@b", "/relative"]


def setup():
    from c61_app import links

    return {"m": links}


def observe(state):
    m = state["m"]
    return {
        "allowed": sorted(m.ALLOWED),
        "safe": [m.is_safe(u) for u in URLS],
    }
