"""Case 65: one module of the patch uses a class that another module of the same patch
adds, as an attribute of the imported module (``sql.Literal``, after ``from . import
sql``), both in a function and in a changed module-level statement (``ANONYMOUS =
sql.Literal("anonymous")``). The fix quotes values (SQL injection). While the patch is
prepared, ``sql`` is the live module, which has ``Literal`` only after the commit; a fresh
v2 import of course has it.
"""

NAMES = ["bob", "x' OR '1'='1"]


def setup():
    from c65_app import query

    return {"m": query}


def observe(state):
    m = state["m"]
    return {
        "where": [m.where_user(n) for n in NAMES],
        "default": m.where_default(),
        "default_type": type(m.ANONYMOUS).__name__,
    }
