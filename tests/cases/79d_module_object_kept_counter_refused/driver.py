"""Case 79d (gen_objects.py, pattern module-rebuilt): DEFAULT = Conn() at module level,
used since import; 2.0 gives Conn a send counter. The apply used to rebuild DEFAULT,
dropping what the process did to it; it is now an older object like any other: its
counter is history no code can derive, so the apply refuses (SUT-E209)."""


def setup():
    from c79d_app import conn
    conn.DEFAULT.send("a")        # run-time state of a module-level object
    return {"mod": conn}


def observe(state):
    d = state["mod"].DEFAULT
    n = d.send("b")
    d.log.pop()
    return [n, getattr(d, "sent", None)]
