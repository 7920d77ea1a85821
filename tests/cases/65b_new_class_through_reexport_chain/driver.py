"""Case 65b: as case 65, through a chain of re-exports. The fix adds a module
``filters/html.py`` defining ``Escaper``, re-exports it from ``filters/__init__.py``
(``from .html import Escaper``), and ``render.py`` takes it from the package (``from
.filters import Escaper``) and builds the default filter at import (``FILTERS = {...,
"default": Escaper()}``): output is now escaped (XSS). A fresh v2 import has the
escaping default; a patched process must import the new submodule, re-export the name,
and rebuild ``FILTERS`` in that order.
"""

VALUES = ["hello", "<script>alert(1)</script>"]


def setup():
    from c65b_app import render

    return {"m": render}


def observe(state):
    m = state["m"]
    return {
        "default": [m.render(v) for v in VALUES],
        "upper": m.render("a<b", "upper"),
    }
