def setup():
    from r5_app import m
    return {"box": m.Box()}


def observe(state):
    box = state["box"]
    try:
        out = [box.put(i) for i in range(3)]
    except Exception as exc:
        out = "<exc %s: %s>" % (type(exc).__name__, exc)
    box.items[:] = []
    return out
