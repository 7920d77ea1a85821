"""Case 47: PyYAML 5.4's CVE-2020-14343 fix. Module-level registrations move from
FullConstructor to UnsafeConstructor; they live in class-level dicts filled at import,
so swapping code changes nothing. The builder asks for a hook (an added and a removed
module statement acting on live classes); with the hook the process behaves like a fresh
5.4 process after apply and like 5.3.1 after revert."""


def setup():
    from c47_app import constructor

    return {"m": constructor}


def observe(state):
    m = state["m"]
    return {cls: [getattr(m, cls)().build(t) for t in ("python/object:os", "python/name:x")]
            for cls in ("FullConstructor", "UnsafeConstructor")}
