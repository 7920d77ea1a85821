"""Case 45: ``_finders = None`` is a placeholder the application replaces at run time
(``configure()``; setuptools 69's pkg_resources did the same through ``_declare_state``);
the fixed version changes the statement to ``_finders = {}``. Rebinding ``_finders`` to the
new statement's value would drop what the process configured, so the engine refuses: the
live value is no longer what the old statement made (the builder cannot know)."""


def setup():
    from c45_app import finders

    finders.configure(app=lambda: "app finder")
    return {"m": finders}


def observe(state):
    m = state["m"]
    return {k: m.find(k) for k in ("app", "egg")}
