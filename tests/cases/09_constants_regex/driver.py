"""Case 09: LIMIT and PATTERN change; another module imported them (one under an alias),
and check() captured PATTERN as a default argument value."""

NAMES = ["alice", "a.b", "../admin", "x" * 20, "\u00e9mile"]


def setup():
    from c09_app import accounts, rules

    return {"rules": rules, "accounts": accounts}


def observe(state):
    rules, accounts = state["rules"], state["accounts"]
    return {
        "check": [rules.check(n) for n in NAMES],
        "valid_username": [accounts.valid_username(n) for n in NAMES],
        "describe": accounts.describe(),
        "module": [rules.LIMIT, rules.PATTERN.pattern],
    }
