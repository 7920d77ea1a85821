"""Case 04: v1's closure captures `limit`, v2's captures `maximum` (same count).

A code swap that only compares the number of free variables would read the
wrong cell. No closure built before the patch is kept alive.
"""

SIZES = [-1, 5, 11, 900, 5000]


def setup():
    from c04_app import limits

    return {"limits": limits}


def observe(state):
    make = state["limits"].make_limiter
    return {str(limit): [make(limit)(s) for s in SIZES] for limit in (10, 10 ** 6)}
