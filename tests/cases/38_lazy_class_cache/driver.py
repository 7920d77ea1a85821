"""Case 38: a class attribute (``rules``) is compiled lazily by the metaclass into another
attribute (``_compiled``) on first use, guarded by ``'_compiled' not in cls.__dict__``
(Pygments' lexers; the CVE harness found PropertiesLexer keeping its old regexes). The
patch changes ``rules``: the derived ``_compiled`` of the class and of a subclass that
inherits ``rules`` must be recomputed; a subclass with its own ``rules`` keeps its state."""

TEXT = "a=1 key b:2 Z"


def setup():
    from c38_app import lexers

    # instantiate everything first: the caches are filled before the patch
    return {"m": lexers, "live": [lexers.PropertiesLexer(), lexers.StrictProperties(),
                                  lexers.OwnRules()]}


def observe(state):
    m = state["m"]
    return {
        "live": [lx.kinds(TEXT) for lx in state["live"]],
        "new": [cls().kinds(TEXT) for cls in (m.PropertiesLexer, m.StrictProperties, m.OwnRules)],
    }
