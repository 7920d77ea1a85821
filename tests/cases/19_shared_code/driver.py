"""Case 19: closures from a factory and types.FunctionType clones share code objects;
every one of them must run the new code."""

VALUES = ["ok", "a\x00b", " padded ", "x" * 20]


def setup():
    from c19_app import fields

    return {"fields": fields, "held": [fields.VALIDATORS[8], fields.FIELD_CHECKS["city"]]}


def observe(state):
    f = state["fields"]
    return {
        "validators": {str(n): [v(x) for x in VALUES] for n, v in sorted(f.VALIDATORS.items())},
        "checks": {k: [c(x) for x in VALUES] for k, c in sorted(f.FIELD_CHECKS.items())},
        "held": [[fn(x) for x in VALUES] for fn in state["held"]],
        "template": [f._printable(x) for x in VALUES],
        "new": [f.make_validator(4)(x) for x in VALUES],
    }
