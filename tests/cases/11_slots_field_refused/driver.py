"""Case 11: Token gains a slot; live instances cannot grow one, so restart is required."""


def setup():
    from c11_app import tokens

    return {"mod": tokens, "live": [tokens.Token("abc"), tokens.Token("")]}


def observe(state):
    new = state["mod"].Token("def")
    return {
        "live": [[t.allows(a) for a in ("read", "write")] for t in state["live"]],
        "new": [new.allows(a) for a in ("read", "write")],
        "slots": list(state["mod"].Token.__slots__),
    }
