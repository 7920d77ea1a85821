"""Quota rules."""


def limit_for(user):
    return 10
