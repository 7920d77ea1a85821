"""User roles."""

import enum


class Role(enum.Enum):
    VIEWER = "viewer"
    EDITOR = "editor"


def parse_role(text):
    try:
        return Role(text)
    except ValueError:
        return Role.VIEWER


def can_delete(role):
    return role is not Role.VIEWER
