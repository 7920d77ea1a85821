"""Validators built at import time from one code object each."""

import types


def make_validator(max_len):
    def validate(value):
        return len(value) <= max_len and "\x00" not in value
    return validate


VALIDATORS = {n: make_validator(n) for n in (8, 32, 128)}


def _printable(value):
    return value.isprintable() and value.strip() == value


FIELD_CHECKS = {
    field: types.FunctionType(_printable.__code__, globals(), "check_" + field)
    for field in ("name", "email", "city")
}
