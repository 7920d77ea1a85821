"""Case 43b: Werkzeug 2.2.3's RulePart gains the field `suffixed` with no default, and
the new matcher reads it on every request from parts compiled at start-up. Instances made
before the patch have no value for it: the builder asks for a migration hook."""


def setup():
    from c43b_app import rules

    return {"m": rules, "parts": rules.compile_rule("api/*/items")}


def observe(state):
    m = state["m"]
    out = {}
    for path in ("api/7/items", "api/7/other"):
        try:
            out[path] = m.match(state["parts"], path)
        except AttributeError as exc:
            out[path] = f"AttributeError: {exc}"
    out["fresh"] = m.match(m.compile_rule("a/*"), "a/b")
    out["fields"] = sorted(m.RulePart.__dataclass_fields__)
    return out
