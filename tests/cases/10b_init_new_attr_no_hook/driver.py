"""Case 10b: as case 10 but without a migration hook.

SessionStore.__init__ gains max_sessions (a new parameter's default) that the new
is_full() reads. The builder derives it (issue 21): a store built before the patch gets
max_sessions = 3 on its first read, as a store the fixed release builds. observe() uses
that old store as well as stores it builds afresh, and drops what it added, so each phase
starts from the same sessions.
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
    old = state["old_store"]
    old_added = [old.add("o%d" % i, "eve") for i in range(4)]
    for i in range(4):
        old.sessions.pop("o%d" % i, None)
    return {"added": added, "count": len(s.sessions), "lookup": s.lookup("n0"),
            "old_store": old_added}
