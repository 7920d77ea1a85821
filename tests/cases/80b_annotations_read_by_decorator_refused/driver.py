"""Case 80b: only an annotation changes, on a function whose decorator read the
annotations when it was defined (pydantic's validate_call). Carrying the function's own
annotations would leave the converters the decorator built with the old type: the
"fixed" process would still accept "1e9". The builder's verdict is "hook" (SUT-E204
without one), and the engine refuses a patch forced past the builder."""

RAW = ["5", "1e9", "0.5"]


def setup():
    from c80b_app import checked

    return {"m": checked}


def observe(state):
    out = []
    for raw in RAW:
        try:
            out.append(state["m"].pay(raw))
        except ValueError as exc:
            out.append(str(exc))
    return {"pay": out}
