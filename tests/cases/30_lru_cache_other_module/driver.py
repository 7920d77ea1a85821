"""Case 30: acl.allowed (lru_cache, in a module the patch does not touch) caches the answers
of rules.limit_for, which the patch changes. After apply the fixed answers must be returned:
a fresh v2 process never saw the vulnerable ones (found by tests/generated, seed 30).
"""

CALLS = [("guest", 5), ("alice", 5), ("guest", 20)]


def setup():
    from c30_app import acl

    for user, n in CALLS:
        acl.allowed(user, n)
    return {"acl": acl}


def observe(state):
    return {"allowed": [state["acl"].allowed(user, n) for user, n in CALLS]}
