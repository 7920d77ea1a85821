"""Case 12: Enum Role gains a member; restart is required."""


def setup():
    from c12_app import roles

    return {"mod": roles, "editor": roles.Role.EDITOR}


def observe(state):
    mod = state["mod"]
    parsed = [mod.parse_role(t) for t in ("viewer", "editor", "admin")]
    return {
        "members": [m.value for m in mod.Role],
        "parsed": [r.name for r in parsed],
        "can_delete": [mod.can_delete(r) for r in parsed],
        "held_editor": mod.can_delete(state["editor"]),
    }
