"""Case 13: Handler(Base) becomes Handler(Base, AuditMixin); the layouts are compatible.

Existing instances and a subclass from another module must see the new MRO.
"""

PATHS = ["a/b", "a/../../etc/passwd"]


def setup():
    from c13_app import api, handlers

    return {"handlers": handlers, "api": api,
            "h": handlers.Handler(), "a": api.ApiHandler()}


def observe(state):
    api, handlers = state["api"], state["handlers"]
    return {
        "handler": [state["h"].handle(p) for p in PATHS],
        "api": [state["a"].handle(p) for p in PATHS],
        "new_api": api.ApiHandler().handle(PATHS[1]),
        "mro_handler": [c.__name__ for c in handlers.Handler.__mro__],
        "mro_api": [c.__name__ for c in api.ApiHandler.__mro__],
        "bases": [c.__name__ for c in handlers.Handler.__bases__],
    }
