"""Case 05: a view under two functools.wraps decorators and an import-time route table.

The patch must reach the innermost function (module attribute `download` is the
outermost wrapper) and must not register the view a second time.
"""

REQS = [
    {"name": "a.txt"},
    {"name": "a.txt", "token": "t"},
    {"name": "../etc/passwd", "token": "t"},
    {"name": ".env", "token": "t"},
]


def setup():
    from c05_app import views, web

    return {"views": views, "web": web}


def observe(state):
    web, views = state["web"], state["views"]
    return {
        "routes": {path: len(fns) for path, fns in sorted(web.ROUTES.items())},
        "names": {path: [f.__name__ for f in fns] for path, fns in sorted(web.ROUTES.items())},
        "dispatch": [web.dispatch("/files", r) for r in REQS],
        "direct": [views.download(r) for r in REQS],
        "unwrapped": views.download.__wrapped__.__wrapped__({"name": "../x"}),
        "health": web.dispatch("/health", {}),
    }
