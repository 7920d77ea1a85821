"""Case 11b: dataclass Upstream gains a field with a plain default (``verify_tls = True``).

Until the engine could regenerate standard-library dataclasses this needed a restart;
now __init__, repr and fields() are generated again on the live class, and the instance
made before the patch reads the new field's default through the class, as a fresh
process's instance built with the default has it."""

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
