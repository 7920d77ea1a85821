def setup():
    from r6_app import flow
    gen = flow.stream([" line %d  " % i for i in range(10)])
    next(gen)
    return {"mod": flow, "gen": gen}


def observe(state):
    try:
        nxt = next(state["gen"])
    except Exception as exc:
        nxt = "<exc %s: %s>" % (type(exc).__name__, exc)
    return {"stream": nxt, "fresh": list(state["mod"].stream([" abcdef "]))}
