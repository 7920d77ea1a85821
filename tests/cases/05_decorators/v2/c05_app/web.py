"""Routing and decorators (unchanged between versions)."""

import functools

ROUTES = {}


def route(path):
    """Register the decorated view under path at import time."""
    def deco(fn):
        ROUTES.setdefault(path, []).append(fn)
        return fn
    return deco


def require_token(fn):
    @functools.wraps(fn)
    def wrapper(req):
        if not req.get("token"):
            return {"status": 401}
        return fn(req)
    return wrapper


def tag_response(fn):
    @functools.wraps(fn)
    def wrapper(req):
        resp = fn(req)
        resp["view"] = fn.__name__
        return resp
    return wrapper


def dispatch(path, req):
    return [view(req) for view in ROUTES[path]]
