"""Rendering with the configured filters."""

from .filters import Escaper, upper

FILTERS = {"upper": upper, "default": Escaper()}


def render(value, name="default"):
    return "<p>%s</p>" % FILTERS[name](value)
