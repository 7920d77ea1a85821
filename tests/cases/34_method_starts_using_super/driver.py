"""Case 34: AdminHandler.allowed starts calling super(), so its closure must gain a
__class__ cell that the live function object does not have (found by tests/generated when an
edit dropped a super() call; the engine first refused it). The engine now builds a new
function with the cell and turns the old object into a forwarder, so a bound method taken
before the patch sees the fix too; the builder reports it as a caveat.
"""

USERS = ["admin", "guest", "admin-guest", "bob"]


def setup():
    from c34_app import handlers

    live = handlers.AdminHandler()
    return {"handlers": handlers, "live": live, "bound": live.allowed}


def observe(state):
    handlers = state["handlers"]
    return {
        "new": [handlers.AdminHandler().allowed(u) for u in USERS],
        "live": [state["live"].allowed(u) for u in USERS],
        "bound": [state["bound"](u) for u in USERS],
    }
