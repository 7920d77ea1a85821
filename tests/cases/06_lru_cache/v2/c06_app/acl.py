"""Access decisions, cached because they are asked for on every request."""

import functools
import posixpath

ADMINS = ("root", "alice")


@functools.lru_cache(maxsize=128)
def is_allowed(path):
    return posixpath.normpath(path).startswith("/public/")


@functools.cache
def is_admin(user):
    return user in ADMINS
