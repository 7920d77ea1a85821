"""Case 78: a generator suspended in the old stream() when clean() gains a parameter.

Resumed after a patch, the old frame would call the new clean(item) and die of
TypeError: the engine waits for it, then refuses naming it. The stream keeps going on
the old code, one item per phase.
"""


def setup():
    from c78_app import text

    gen = text.stream([" line %d  " % i for i in range(10)])
    first = next(gen)
    return {"mod": text, "gen": gen, "first": first}


def observe(state):
    return {"stream": next(state["gen"]), "fresh": list(state["mod"].stream([" abcdef "]))}
