"""Case 43d: a dataclass field default changes, and a dataclass subclass was generated
from the old fields: Child's own __init__ holds ``limit=10``. Regenerating Base alone
would leave Child behind, so the engine refuses (restart required)."""


def setup():
    from c43d_app import models

    return {"m": models}


def observe(state):
    m = state["m"]
    return {"base": m.Base().limit, "child": m.Child().limit}
