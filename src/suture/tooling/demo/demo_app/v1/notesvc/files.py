"""The files under /files/: one directory, served read-only."""

import os


def resolve(root, name):
    """Return the path of the file called ``name`` in the served directory ``root``."""
    return os.path.join(root, name)
