"""Validation rules."""

import re

LIMIT = 64
PATTERN = re.compile(r"^[\w.-]+$")


def check(s, pattern=PATTERN):
    return len(s) <= LIMIT and pattern.match(s) is not None
