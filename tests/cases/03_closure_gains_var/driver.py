"""Case 03: closures made after the patch must capture v2's variables.

No closure built before the patch is kept alive (03b covers that refusal).
"""

PATHS = ["/srv/www/index.html", "/srv/www/../secret", "/srv/www-evil/x", "img/a.png"]


def setup():
    from c03_app import app, guard

    return {"app": app, "guard": guard}


def observe(state):
    make = state["guard"].make_prefix_guard
    return {
        "serve": [state["app"].serve(p) for p in PATHS],
        "new_guard": [make("/srv/data")(p) for p in ["/srv/data/x", "/srv/data/../etc"]],
    }
