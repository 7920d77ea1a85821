"""Cached decisions; this module is the same in v1 and v2."""

import functools

from c30_app.rules import limit_for


@functools.lru_cache(maxsize=None)
def allowed(user, n):
    return n <= limit_for(user)
