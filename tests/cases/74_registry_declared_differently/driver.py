"""Case 74: setuptools 70's ``pkg_resources`` in small. v1 declared a registry with a
placeholder (``_finders = None``) that ``_declare_state`` replaced through ``globals()``;
v2 binds ``_finders = _declare_state(...)``. Both releases' imports end with the same
registry, filled by ``register_finder`` calls at import, and the process registers more
at run time. Evaluating the new statement would bind an empty registry; the manifest
records that both imports make the value alike (``same``), so the engine keeps the live
registry, and the calls that would need a hook are derived: the patch applies without
one, the fix (``..`` refused) is live, and the finder registered at run time survives."""


def setup():
    from c74_app import resources

    resources.register_finder("app", lambda path: "app:" + path)
    return {"m": resources}


def observe(state):
    m = state["m"]
    return {kind: [m.find(kind, "a/b"), m.find(kind, "../etc")]
            for kind in ("dir", "zip", "app", "none")}
