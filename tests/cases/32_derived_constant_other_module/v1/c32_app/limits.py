"""Limits."""

MAX_UPLOAD = 100
