def setup():
    from rp_app import conn
    conn.DEFAULT.send("a")        # run-time state of a module-level object
    return {"mod": conn}


def observe(state):
    d = state["mod"].DEFAULT
    n = d.send("b")
    d.log.pop()
    return n
