def setup():
    from rq_app import lim
    box = lim.Box()          # built while LIMIT is 2
    lim.configure(5)         # the application reconfigures later
    return {"mod": lim, "box": box}


def observe(state):
    box = state["box"]
    out = [box.put(i) for i in range(4)]
    box.items[:] = []
    return out
