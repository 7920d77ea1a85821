"""Case 78b: case 78 across modules: app's generators call util.clean through
``from .util import clean`` and ``util.clean``; 2.0 gives clean() a required limit.

Suspended generators of the old app code would call the new clean() the old way: the
engine waits, then refuses naming them. They keep streaming on the old code.
"""


def setup():
    from c78b_app import app

    gens = [app.stream([" line %d  " % i for i in range(10)]),
            app.other([" item %d  " % i for i in range(10)])]
    for g in gens:
        next(g)
    return {"mod": app, "gens": gens}


def observe(state):
    return {"streams": [next(g) for g in state["gens"]],
            "fresh": list(state["mod"].stream([" abcdef "]))}
