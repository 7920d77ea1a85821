"""Case 13b: Session's base gains a slot, which changes the instance layout.

`Session.__bases__ = (_CsrfSlot,)` raises TypeError (layout differs), so restart is required.
"""


def setup():
    from c13b_app import session

    return {"mod": session, "live": session.Session("alice")}


def observe(state):
    mod = state["mod"]
    new = mod.Session("bob")
    return {
        "live": [state["live"].check_csrf(t) for t in ("", "tok-alice")],
        "new": [new.check_csrf(t) for t in ("", "tok-bob")],
        "mro": [c.__name__ for c in mod.Session.__mro__],
    }
