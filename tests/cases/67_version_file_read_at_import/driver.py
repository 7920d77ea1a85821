"""Case 67: a release that ships a security fix next to its VERSION data file, which the
package reads once at import into ``__version__`` (and derives ``USER_AGENT`` from). The
changed data file used to refuse the whole patch as "restart required"; its new text is
what the fixed release holds in ``__version__``, so the engine sets that (and rebuilds
``USER_AGENT``) and the state check verifies both."""

HEADERS = {"Authorization": "Bearer x", "Cookie": "s=1", "Accept": "*/*"}


def setup():
    import c67_app
    from c67_app import auth
    return {"pkg": c67_app, "auth": auth}


def observe(state):
    return {"version": state["pkg"].__version__, "agent": state["pkg"].USER_AGENT,
            "cross_origin": sorted(state["auth"].strip_credentials(HEADERS, False)),
            "same_origin": sorted(state["auth"].strip_credentials(HEADERS, True))}
