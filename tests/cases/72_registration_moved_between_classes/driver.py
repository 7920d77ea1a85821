"""Case 72: PyYAML 5.4's fix (CVE-2020-14343) in small. The "object" constructor moves
from ``FullConstructor`` to ``UnsafeConstructor``: two module-level calls that fill
class-level registries at import. Swapping code changes nothing (the registries were
filled when the module was imported); the builder would ask for a hook, but the state
manifest covers both registries and a dry run shows that deriving them (an entry
deleted, a table set) leaves the whole process equal to a fresh import of the fixed
release: the patch applies without a hook, and loaders made before see the fix."""


def setup():
    from c72_app import constructor

    return {"m": constructor, "full": constructor.FullConstructor(),
            "unsafe": constructor.UnsafeConstructor()}


def observe(state):
    m = state["m"]
    out = {}
    for name, obj in (("full", state["full"]), ("unsafe", state["unsafe"]),
                      ("new_full", m.FullConstructor()),
                      ("new_unsafe", m.UnsafeConstructor())):
        out[name] = [obj.construct(tag, 7) for tag in ("str", "object")]
    out["own_table"] = sorted(k for k, v in vars(m.UnsafeConstructor).items()
                              if k == "constructors")
    return out
