"""Case 36b: the fields of a dataclass change order (each one unchanged): Point(1, 2)
now means x=2, y=1. Every statement alone is the same, so only the order tells; it
needs a restart."""


def setup():
    from c36b_app import geo

    return {"m": geo}


def observe(state):
    p = state["m"].Point(1, 2)
    return {"x": p.x, "y": p.y}
