"""Field validators registered at import time."""


def length_rule(limit):
    return lambda value: len(value) <= limit


RULES = {
    "username": length_rule(32),
    "comment": length_rule(500),
}


def validate(field, value):
    return RULES[field](value)
