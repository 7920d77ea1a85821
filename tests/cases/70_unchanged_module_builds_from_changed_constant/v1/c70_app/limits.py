"""Limits the client enforces."""

MAX_BODY = 1 << 30          # bytes of a response body
MAX_REDIRECTS = 30


def too_large(size, limit=None):
    return size > (MAX_BODY if limit is None else limit)
