"""Case 61b: as case 61 (a changed module-level expression reads names the same patch
newly binds, here from a generator expression *and* a lambda that ``filter`` calls
eagerly: ``frozenset(filter(lambda s: s not in _BLOCKED, (s.lower() for s in
_SAFE_SCHEMES)))``), but the module is not imported before apply: it is *pending*, and is
patched by Suture's import hook when the application first imports it lazily.

setup() imports nothing of c61b_app.links. The first observe() must not import it either
(it runs before apply in the patched run, and importing would make the module live, not
pending): it executes the module's file as it is on disk in a throwaway module object
that is never put in sys.modules (what the process *would* get before any patch). Every
later observe() imports ``c61b_app.links`` for real, through importlib, as a lazy import
in the application would: in the patched run that first import happens after apply and
must come out fixed.
"""

import importlib
import importlib.util
import sys

URLS = ["https://example.org", "javascript:alert(1)", " JavaScript:alert(1)",
        "data:text/html,<script>", "ftp://x", "mailto:a@b", "/relative"]
NAME = "c61b_app.links"


def setup():
    assert NAME not in sys.modules
    return {"calls": 0}


def _throwaway():
    spec = importlib.util.find_spec(NAME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def observe(state):
    state["calls"] += 1
    if state["calls"] == 1:
        assert NAME not in sys.modules
        m = _throwaway()
    else:
        m = importlib.import_module(NAME)
    return {
        "allowed": sorted(m.ALLOWED),
        "safe": [m.is_safe(u) for u in URLS],
    }
