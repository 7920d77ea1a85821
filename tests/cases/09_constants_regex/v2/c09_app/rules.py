"""Validation rules."""

import re

LIMIT = 16
PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


def check(s, pattern=PATTERN):
    return len(s) <= LIMIT and pattern.match(s) is not None
