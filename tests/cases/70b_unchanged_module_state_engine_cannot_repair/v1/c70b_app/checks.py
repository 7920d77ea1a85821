"""Unchanged by the fix: registers the limit at import, by a module-level call."""

from .limits import MAX_BODY

_LIMITS = []


def register(limit):
    _LIMITS.append(limit)


register(MAX_BODY)


def allowed(size):
    return all(size <= limit for limit in _LIMITS)
