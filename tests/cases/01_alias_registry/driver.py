"""Case 01: every route to safe_join must see the fix."""

NAMES = ["a.txt", "../etc/passwd", "sub/../../x", "sub/ok"]


def setup():
    from c01_app import handlers, paths

    storage = handlers.Storage("/srv/data")
    return {"paths": paths, "handlers": handlers, "storage": storage,
            "bound": storage.resolve}


def observe(state):
    h = state["handlers"]
    out = {}
    for name in NAMES:
        out[name] = {
            "module": state["paths"].safe_join("/srv/www", name),
            "imported": h.safe_join("/srv/www", name),
            "alias": h.join_upload("/srv/up", name),
            "registry": {k: f("/srv/reg", name) for k, f in sorted(h.RESOLVERS.items())},
            "callbacks": [cb(name) for cb in h.CALLBACKS],
            "default_arg": state["storage"].resolve(name),
            "bound_method": state["bound"](name),
        }
    return out
