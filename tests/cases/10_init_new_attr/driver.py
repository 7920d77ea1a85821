"""Case 10: SessionStore.__init__ gains max_sessions, used by the new is_full().

The store was built before the patch; the hook's migration sets the attribute.
observe() adds sessions and removes them again, so each phase starts from the
same two sessions and depends only on the code in place.
"""


def setup():
    from c10_app import store

    s = store.SessionStore()
    s.add("s1", "alice")
    s.add("s2", "bob")
    return {"store": s}


def observe(state):
    s = state["store"]
    added = [s.add("n%d" % i, "mallory") for i in range(4)]
    result = {"added": added, "count": len(s.sessions), "lookup": s.lookup("n0"),
              "re_add_existing": s.add("s1", "alice")}
    for i in range(4):
        s.drop("n%d" % i)
    return result
