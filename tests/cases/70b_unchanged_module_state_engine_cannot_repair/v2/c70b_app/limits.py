"""Limits: the fix lowers MAX_BODY."""

MAX_BODY = 1 << 20
