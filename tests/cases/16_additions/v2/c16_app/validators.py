"""Filename validation (new in v2)."""

MAX_NAME = 64


def problem(name):
    if not name or name.startswith("."):
        return "hidden or empty"
    if "/" in name or "\\" in name:
        return "path separator"
    if len(name) > MAX_NAME:
        return "too long"
    return ""
