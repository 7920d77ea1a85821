"""21b_module_call_with_hook: a module-level call with a side effect changes
(REGISTRY.register("admin", AdminHandler) gains require_auth=True).

Re-running module code is not an option, so the change needs a hook; hooks.py
re-registers in post_apply and restores v1's registration in post_revert."""


def setup():
    from c21b_app import admin, registry

    return {"registry": registry, "admin": admin}


def observe(state):
    reg = state["registry"].REGISTRY
    return {
        "routes": reg.describe(),
        "dispatch": [reg.dispatch(name, user) for name in ("admin", "status")
                     for user in (None, "alice")],
    }
