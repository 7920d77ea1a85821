"""The files under /files/: one directory, served read-only."""

import os


def resolve(root, name):
    """Return the path of the file called ``name`` in the served directory ``root``."""
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([base, path]) != base:
        raise PermissionError(f"{name!r} is outside the served directory")
    return path
