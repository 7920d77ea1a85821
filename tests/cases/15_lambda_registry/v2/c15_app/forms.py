"""Field validators registered at import time."""


def length_rule(limit):
    return lambda value: 0 < len(value) <= limit and value.isprintable()


RULES = {
    "username": length_rule(32),
    "comment": length_rule(500),
}


def validate(field, value):
    return RULES[field](value)
