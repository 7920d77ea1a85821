"""Case 41b: ``SCHEMES += [...]`` changes, and SCHEMES is a list imported from another
module. Running the chain again would extend that shared list a second time (a fresh
process never has both items), and there is no statement that makes a new list to start
from: the builder asks for a hook, and the engine refuses the same patch forced past it."""


def setup():
    from c41b_app import base, client

    return {"client": client, "base": base}


def observe(state):
    return {"ftp": state["client"].allowed("ftp"), "https": state["client"].allowed("https"),
            "shared": list(state["base"].SCHEMES)}
