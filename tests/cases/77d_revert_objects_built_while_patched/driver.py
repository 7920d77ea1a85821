"""Case 77d: the fixed release drops an attribute the vulnerable methods read.

Each phase builds one more meter, so the meter built while the patch is applied has no
``step``; after the revert the restored tick() reads it, and the revert gives it the
value the vulnerable __init__ sets (derived at revert).
"""


def setup():
    from c77d_app import meter

    return {"mod": meter, "made": []}


def observe(state):
    state["made"].append(state["mod"].Meter())
    return [m.tick() for m in state["made"]]
