"""Case 03b: a closure built before the patch is alive; v2's code needs a cell it lacks."""

PATHS = ["/srv/www/index.html", "/srv/www/../secret", "/srv/www-evil/x", "img/a.png"]


def setup():
    from c03b_app import app, guard

    return {"app": app, "guard": guard, "live": guard.make_prefix_guard("/srv/www")}


def observe(state):
    return {
        "live": [state["live"](p) for p in PATHS],
        "serve": [state["app"].serve(p) for p in PATHS],
    }
