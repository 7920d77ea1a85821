"""The client: unchanged by the fix, but its class attributes and its module-level
session were built at import from the limits the fix changes."""

from . import limits
from .limits import MAX_BODY, MAX_REDIRECTS


class Session:
    max_body = MAX_BODY
    max_redirects = MAX_REDIRECTS

    def __init__(self, name):
        self.name = name
        self.max_body = self.max_body          # copied per session at construction
        self.max_redirects = self.max_redirects

    def accepts(self, size):
        return not limits.too_large(size, self.max_body)

    def follows(self, hops):
        return hops <= self.max_redirects


DEFAULT_SESSION = Session("default")


def fetch(size, hops=0):
    return DEFAULT_SESSION.accepts(size) and DEFAULT_SESSION.follows(hops)
