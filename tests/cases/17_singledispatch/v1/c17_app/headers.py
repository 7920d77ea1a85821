"""Rendering values into HTTP header values."""

from functools import singledispatch


@singledispatch
def header_value(value):
    return str(value)


@header_value.register(int)
def _header_int(value):
    return str(value)


@header_value.register(str)
def _header_str(value):
    return value.replace("\r", "").replace("\n", "")


def render(name, value):
    return "%s: %s" % (name, header_value(value))
