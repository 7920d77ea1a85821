"""Limits."""

MAX_UPLOAD = 10
