"""Case 20: DEFAULT = Policy() (same text, but Policy.__init__'s defaults change) and
STRICT = Policy(...) (arguments change). After apply the module must hold what a
fresh v2 import builds.

observe() copies the attribute dicts: the runner serialises phases only at the end.
"""


def setup():
    from c20_app import policy

    return {"policy": policy}


def observe(state):
    p = state["policy"]
    return {
        "DEFAULT": dict(vars(p.DEFAULT)),
        "STRICT": dict(vars(p.STRICT)),
        "fresh": dict(vars(p.Policy())),
        "login_allowed": [p.login_allowed(n) for n in (2, 4, 7, 12)],
        "strict_allowed": [p.login_allowed(n, p.STRICT) for n in (2, 4)],
    }
