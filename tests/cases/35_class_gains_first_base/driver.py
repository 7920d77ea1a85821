"""Case 35: Session had no base and gains ReadOnlyMixin. The builder says caveat ("__bases__
is assigned in place; refused at apply if the instance layouts are incompatible"), but
CPython never lets a class whose base is object take a heap class as base ("__bases__
assignment: 'ReadOnlyMixin' deallocator differs from 'object'", 3.9-3.13), whatever the
layouts: the engine always refuses (SUT-E203). The builder can know that, so it must refuse
with a restart verdict instead of writing a patch that cannot apply (found by
tests/generated; a class that already has a base, as in case 13, takes a mixin fine).
"""

USERS = ["alice", "guest"]


def setup():
    from c35_app import session

    return {"session": session, "live": [session.Session(u) for u in USERS]}


def observe(state):
    session = state["session"]
    return {
        "new": [session.Session(u).can_export() for u in USERS],
        "live": [s.can_export() for s in state["live"]],
        "mro": [c.__name__ for c in session.Session.__mro__],
    }
