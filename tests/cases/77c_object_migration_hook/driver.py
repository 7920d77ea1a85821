"""Case 77c_object_migration_hook: Conn gains a handshake flag set by hello(), read by packet().

A connection that said hello before the patch must keep working after it: whether it
greeted is history the fixed __init__ cannot give it, so the builder cannot derive it.
"""


def setup():
    from c77c_app import conn

    greeted = conn.Conn("alice")
    greeted.hello()
    return {"mod": conn, "greeted": greeted}


def observe(state):
    fresh = state["mod"].Conn("bob")
    return {"greeted": state["greeted"].packet("x"), "fresh_early": fresh.packet("y"),
            "fresh_after": [fresh.hello(), fresh.packet("z")]}
