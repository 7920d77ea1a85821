"""Case 06: lru_cache/cache already hold the vulnerable answers when the patch comes.

After apply the fixed answers must be returned (stale entries dropped); after
revert the vulnerable ones again. cache_info() is not observed: a patched
process legitimately has different hit counts.
"""

PATHS = ["/public/a.css", "/public/../etc/shadow", "/private/x"]
USERS = ["alice", "ALICE", "Root", "bob"]


def setup():
    from c06_app import acl

    for p in PATHS:
        acl.is_allowed(p)
    for u in USERS:
        acl.is_admin(u)
    return {"acl": acl, "is_allowed": acl.is_allowed}


def observe(state):
    acl = state["acl"]
    return {
        "allowed": [acl.is_allowed(p) for p in PATHS],
        "allowed_ref": [state["is_allowed"](p) for p in PATHS],
        "admin": [acl.is_admin(u) for u in USERS],
    }
