"""Uploads; this module is the same in v1 and v2."""

from c33_app.limits import MAX_UPLOAD


def accept(size, cap=MAX_UPLOAD):
    return size <= cap
