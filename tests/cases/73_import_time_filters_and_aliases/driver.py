"""Case 73: requests 2.32's ``requests.packages`` in small. Module-level code of the
fixed release acts on process-wide registries a live patch does not hold as module
state: v1 installed a warning filter at import and v2 does not; v2 aliases a submodule in
``sys.modules`` that v1 did not. The builder would ask for a hook; the state manifest
records both registries as a fresh import of each release leaves them, the engine makes
the live ones match (the filter out, the alias in; revert puts them back), and the
build's dry run shows the whole process equal to a fresh import of v2."""

import sys
import warnings


def setup():
    import c73_app

    return {"m": c73_app}


def observe(state):
    from c73_app import detect

    with warnings.catch_warnings(record=True) as got:   # the process's filters apply
        detect.guess(b"")
    hidden = any(f[1] is not None and f[1].pattern == "Trying to detect"
                 for f in warnings.filters)
    return {"filter": hidden, "warned": len(got),
            "alias": "c73_app.packages.json.decoder" in sys.modules,
            "alias_is_module": sys.modules.get("c73_app.packages.json.decoder")
            is sys.modules.get("json.decoder"),
            "version": state["m"].__version__}
