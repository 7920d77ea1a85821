"""Case 16: v2 adds a class (Rejection), a function (_clean), a method (Uploader.check)
and a module (c16_app.validators, absent from v1's tree) that the changed function imports.

Only behaviour is observed, not whether the added names exist (after revert they
may linger harmlessly).
"""

NAMES = ["a.txt", " b.txt ", "../../etc/cron.d/x", ".htaccess", "n" * 80]


def setup():
    from c16_app import api

    return {"api": api, "live": api.Uploader("/srv/up")}


def observe(state):
    api = state["api"]
    return {
        "live": [api.handle_upload(state["live"], n) for n in NAMES],
        "new": api.handle_upload(api.Uploader("/tmp/u"), "../x"),
    }
