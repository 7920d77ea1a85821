"""Rendering values into HTTP header values."""

from functools import singledispatch


@singledispatch
def header_value(value):
    return str(value)


@header_value.register(int)
def _header_int(value):
    if value < 0 or value > 2 ** 31:
        raise ValueError("header integer out of range")
    return str(value)


@header_value.register(str)
def _header_str(value):
    return value.replace("\r", "").replace("\n", "")


@header_value.register(bytes)
def _header_bytes(value):
    return _header_str(value.decode("latin-1"))


def render(name, value):
    return "%s: %s" % (name, header_value(value))
