"""Case 46b: a module is removed, but the fixed version still imports it. The patched
process would find the old module (still loaded, still on disk) where a fresh process of
the fixed version fails: a restart is required."""


def setup():
    from c46b_app import api

    return {"m": api}


def observe(state):
    return {"version": state["m"].version()}
