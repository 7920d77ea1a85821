"""Rendering with the configured filters."""

from .filters import upper

FILTERS = {"upper": upper, "default": str}


def render(value, name="default"):
    return "<p>%s</p>" % FILTERS[name](value)
