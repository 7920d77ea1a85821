"""Case 77: objects built before the patch gain derived state on first read.

Parser.__init__ gains a limit (a new keyword parameter's default), a keyword-only mode,
a lock and a text made from a module constant; the fixed feed() reads all four. Objects
built before the patch (held in state, in a registry, at module level, a subclass's, a
copy and a pickled-and-loaded one) must behave like ones the fixed release builds, and
copies and pickles of migrated objects must keep working.
"""

import copy
import pickle


def setup():
    from c77_app import limits

    kept = limits.Parser("kept")
    sub = limits.StrictParser("sub")
    for p in (kept, sub, limits.DEFAULT, limits.REGISTRY["main"]):
        p.feed("a")
    return {"mod": limits, "kept": kept, "sub": sub, "in_list": [limits.Parser("listed")],
            "frozen": pickle.dumps(limits.Quota()), "quota": limits.Quota()}


def observe(state):
    mod = state["mod"]
    out = {}
    objs = {"kept": state["kept"], "sub": state["sub"], "default": mod.DEFAULT,
            "registered": mod.REGISTRY["main"], "listed": state["in_list"][0],
            "copied": copy.copy(state["kept"])}
    for name, p in objs.items():
        before = list(p.seen)
        out[name] = [p.feed(i) for i in range(4)]
        p.seen[:] = before   # every phase starts from the same items
    out["describe"] = state["sub"].describe()
    out["unpickled"] = [pickle.loads(state["frozen"]).take() for _ in range(2)]
    q = state["quota"]
    out["quota"] = [q.take() for _ in range(3)]
    q.used = 0
    out["round_trip"] = [pickle.loads(pickle.dumps(q)).take() for _ in range(2)]
    return out
