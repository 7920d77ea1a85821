"""Case 84 (3.12+, PEP 695): a generic function's type parameters change with its body
(a constraint becomes a bound), and a method of a generic class changes its annotations,
which read the class's type parameter. Its __type_params__ and the annotations that read them
come from the def's own type-parameter scope, which a live function cannot be given:
the builder refuses (restart), and so does the engine for a patch forced past it,
leaving the process as it was."""


def setup():
    import c84_app

    return {"m": c84_app}


def observe(state):
    m = state["m"]
    (n,) = m.clamp.__type_params__
    try:
        low = m.clamp(-1, 5)
    except ValueError as exc:
        low = str(exc)
    return {"bound": repr(n.__bound__), "constraints": [c.__name__ for c in n.__constraints__],
            "clamp": [m.clamp(3, 5), low], "first": m.first([2, 1]),
            "put": [m.Box().put(1), m.Box().put(None)],
            "put annotations": sorted(m.Box.put.__annotations__)}
