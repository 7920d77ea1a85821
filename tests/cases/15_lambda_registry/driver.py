"""Case 15: lambdas built by length_rule() at import time sit in RULES; the lambda body changes.

The lambda's free variables (`limit`) are the same, so the live closures can take
the new code.
"""

VALUES = ["bob", "", "evil\x1b[2J", "x" * 40]


def setup():
    from c15_app import forms

    return {"forms": forms, "held": forms.RULES["username"]}


def observe(state):
    forms = state["forms"]
    return {
        "validate": {f: [forms.validate(f, v) for v in VALUES] for f in sorted(forms.RULES)},
        "held": [state["held"](v) for v in VALUES],
        "new_rule": [forms.length_rule(4)(v) for v in VALUES],
    }
