"""Limits the client enforces."""

MAX_BODY = 1 << 20          # bytes of a response body
MAX_REDIRECTS = 10


def too_large(size, limit=None):
    return size > (MAX_BODY if limit is None else limit)
