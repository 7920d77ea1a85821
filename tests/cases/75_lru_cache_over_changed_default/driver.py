"""Case 75: an ``lru_cache`` warmed before the patch, over a function whose *default*
changes (no code changes): its cached answers are the old default's. Reduced from
generated seed 921 (``store.cached_b10`` -> ``calc_b8`` -> ``opt_b7``, ``y=8`` -> ``y=1``).
The engine clears caches that read a function whose defaults the patch changes, as it
does for changed code."""


def setup():
    from c75_app import store

    store.cached(1)
    return {"m": store}


def observe(state):
    m = state["m"]
    return [m.cached(1), m.cached(2), m.calc(1)]
