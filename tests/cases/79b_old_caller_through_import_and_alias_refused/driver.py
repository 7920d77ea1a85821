"""Case 79b (found by tests/generated/gen_objects.py, pattern indirect-callee): suspended
generators of the old flow module call text.clean, which 2.0 gives a required limit,
through ``from .text import clean``, a module-level alias and ``text.clean``. Resumed after
a patch they would die of TypeError: the engine waits, then refuses naming them."""


def setup():
    from c79b_app import flow
    gens = [f([" line %d  " % i for i in range(10)])
            for f in (flow.stream, flow.aliased, flow.dotted)]
    for g in gens:
        next(g)
    return {"mod": flow, "gens": gens}


def observe(state):
    out = []
    for g in state["gens"]:
        try:
            out.append(next(g))
        except Exception as exc:
            out.append("<exc %s: %s>" % (type(exc).__name__, exc))
    return {"streams": out, "fresh": list(state["mod"].stream([" abcdef "]))}
