"""Case 37: a module holds a lazy proxy that raises on any attribute access (Django's
settings before configure(), found by the CVE harness: the engine's scans called
isinstance() on it, which reads __class__). Applying must not touch it."""


def setup():
    from c37_app import conf

    return {"m": conf}


def observe(state):
    m = state["m"]
    return {"allowed": [m.allowed(n) for n in (-1, 0, 5, 11)], "limit": m.limit()}
