"""Case 82 (3.15+, PEP 810): the patched modules are imported lazily (``lazy import``,
``lazy from ... import``). When the patch arrives, c82_early has been loaded (used in
phase 0), c82_parser and c82_rules have not (first used after apply, phase 1), and
c82_late is first used after revert (phase 2). The apply must not load them (a lazy
import stays lazy: its module is *pending*) and each must run the fixed code when it is
loaded after apply, the old code when loaded after revert. Each observation reports,
before it uses anything, which modules are loaded and which of the application's
globals are still lazy proxies: read from the dict, with type(), which does not load
them (any attribute of a proxy, even __class__, does).

The fix also adds ``lazy import colorsys`` to c82_early, which is loaded when the patch
arrives: the new statement runs in the engine's scratch namespace and must bind a lazy
proxy, not load colorsys (after_apply)."""
import sys

MODULES = ("c82_early", "c82_parser", "c82_rules", "c82_late")
NAMES = ("c82_early", "c82_parser", "allowed", "c82_late")


def setup():
    import c82_app

    return {"app": c82_app, "calls": 0}


def observe(state):
    app, phase = state["app"], state["calls"]
    state["calls"] += 1
    ns = vars(app)
    out = {"loaded": [m for m in MODULES if m in sys.modules],
           "lazy": [n for n in NAMES if type(ns[n]).__name__ == "lazy_import"],
           "early": [app.early(t) for t in ("Admin", "user")]}
    if phase >= 1:
        out["handle"] = [app.handle(r, n) for r, n in ((" a ", 5), ("b\\x00", 50), ("c", -1))]
    if phase >= 2:
        out["late"] = [app.late(p) for p in ("a/b", "../etc", "/etc/passwd", "a/..")]
    return out


def after_apply(state, runtime):
    early = sys.modules["c82_early"]
    assert type(vars(early)["colorsys"]).__name__ == "lazy_import", vars(early)["colorsys"]
    assert "colorsys" not in sys.modules, "the apply loaded a lazy import"
    # a proxy both versions hold in a patched module: the apply's scans and state
    # check walk that module's dict, and must not load it
    assert type(vars(early)["wave"]).__name__ == "lazy_import" and "wave" not in sys.modules
    assert "c82_late" not in sys.modules and "c82_parser" not in sys.modules
