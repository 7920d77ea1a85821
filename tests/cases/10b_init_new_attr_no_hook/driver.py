"""Case 10b: as case 10 but without a migration hook.

Stores built before the patch lack max_sessions, so the builder can only give
SessionStore.__init__ a caveat. One such store stays alive in state but is never
observed; observe() builds its stores afresh after the patch.
"""


def setup():
    from c10b_app import store

    old = store.SessionStore()
    old.add("s1", "alice")
    return {"mod": store, "old_store": old}


def observe(state):
    s = state["mod"].SessionStore()
    s.add("s1", "alice")
    s.add("s2", "bob")
    added = [s.add("n%d" % i, "mallory") for i in range(4)]
    return {"added": added, "count": len(s.sessions), "lookup": s.lookup("n0")}
