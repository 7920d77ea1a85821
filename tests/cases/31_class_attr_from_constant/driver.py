"""Case 31: Validator.limit is read from MAX_LEN when the class body runs; the patch lowers
MAX_LEN. A fresh v2 process has limit 16, so a patched one must too, for instances made
before and after the patch (found by tests/generated, seeds 49 and 220). Module-level
assignments that read a changed constant are evaluated again; class attributes are not.
"""

NAMES = ["bob", "x" * 20, "y" * 80]


def setup():
    from c31_app import names

    return {"names": names, "live": names.Validator()}


def observe(state):
    names = state["names"]
    return {
        "limit": names.Validator.limit,
        "live": [state["live"].check(n) for n in NAMES],
        "new": [names.Validator().check(n) for n in NAMES],
    }
