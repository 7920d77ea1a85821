"""Case 11b: dataclass Upstream gains a field; restart is required."""

import dataclasses


def setup():
    from c11b_app import config

    return {"mod": config, "live": config.Upstream("api.example")}


def observe(state):
    mod = state["mod"]
    return {
        "live": mod.connect_args(state["live"]),
        "new": mod.connect_args(mod.Upstream("db.example", 5432)),
        "fields": [f.name for f in dataclasses.fields(mod.Upstream)],
        "repr": repr(mod.Upstream("x")),
    }
