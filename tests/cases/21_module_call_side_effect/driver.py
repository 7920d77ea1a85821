"""21_module_call_side_effect: a module-level call with a side effect changes
(REGISTRY.register("admin", AdminHandler) gains require_auth=True).

Re-running module code is not an option, so the change needs a hook."""


def setup():
    from c21_app import admin, registry

    return {"registry": registry, "admin": admin}


def observe(state):
    reg = state["registry"].REGISTRY
    return {
        "routes": reg.describe(),
        "dispatch": [reg.dispatch(name, user) for name in ("admin", "status")
                     for user in (None, "alice")],
    }
