"""Uses the rules through names bound at import time."""

from c09_app.rules import PATTERN
from c09_app.rules import LIMIT as MAX_LEN


def valid_username(name):
    return len(name) <= MAX_LEN and PATTERN.fullmatch(name) is not None


def describe():
    return {"max_len": MAX_LEN, "pattern": PATTERN.pattern}
