"""Serves files through a guard built per request."""

from c03b_app.guard import make_prefix_guard

ROOT = "/srv/www"


def serve(path):
    if not make_prefix_guard(ROOT)(path):
        return "403"
    return "200 " + path
