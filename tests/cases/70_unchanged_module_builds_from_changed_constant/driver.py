"""Case 70: a fix lowers two limits in ``limits``; ``client``, whose source does not
change, copied them at import into class attributes (``Session.max_body = MAX_BODY``) and,
through ``__init__``, into the module-level ``DEFAULT_SESSION``. A patch that replaces only
``limits`` leaves the default session accepting 512 MiB bodies and 30 redirects while the
apply says "applied": the builder imports ``client`` too (an unchanged module that imports
a changed one), sees its state differ, and carries it with no code change, so the engine
sets the class attributes and the session's attributes (the session keeps its identity)
and the state check verifies them."""


def setup():
    from c70_app import client
    return {"client": client, "session": client.DEFAULT_SESSION}


def observe(state):
    client = state["client"]
    return {"fetch_512MiB": client.fetch(512 << 20),
            "fetch_small_15_hops": client.fetch(100, 15),
            "default_limits": [client.DEFAULT_SESSION.max_body,
                               client.DEFAULT_SESSION.max_redirects],
            "class_limits": [client.Session.max_body, client.Session.max_redirects],
            "new_session": [client.Session("x").accepts(512 << 20),
                            client.Session("x").follows(15)],
            "same_session": client.DEFAULT_SESSION is state["session"],
            "kept_session_accepts_512MiB": state["session"].accepts(512 << 20)}


def after_apply(state, runtime):
    assert state["client"].DEFAULT_SESSION is state["session"], "the session was replaced"
