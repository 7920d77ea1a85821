"""Quota rules."""


def limit_for(user):
    return 0 if user == "guest" else 10
