"""Uploads; this module is the same in v1 and v2."""

from c32_app.limits import MAX_UPLOAD

HARD_CAP = MAX_UPLOAD * 2


def accept(size):
    return size <= HARD_CAP
