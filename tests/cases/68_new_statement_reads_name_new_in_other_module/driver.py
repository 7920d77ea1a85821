"""Case 68 (found by tests/generated/gen.py, pattern "new-name-at-import"): like case 65,
but ``query`` did not import ``sql`` in v1: the fix adds ``from . import sql`` and *new*
module-level statements that use what ``sql`` gains (``ANONYMOUS = sql.Literal(...)``,
``MAX_ROWS = sql.LIMIT * 2``). A fresh v2 import runs them after ``sql`` has ``Literal``
and ``LIMIT``; the patch must too (today the engine evaluates them against the live
``sql`` first and refuses, SUT-E200: a refusal, not a divergence, of a patchable fix)."""

NAMES = ["bob", "x' OR '1'='1"]


def setup():
    from c68_app import query

    return {"m": query}


def observe(state):
    m = state["m"]
    return {
        "where": [m.where_user(n) for n in NAMES],
        "default": m.where_default(),
        "names": sorted(n for n in vars(m) if not n.startswith("_")),
    }
