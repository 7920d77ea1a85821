"""Path helpers."""

import posixpath


def safe_join(root, name):
    """Join a user-supplied name below root."""
    return posixpath.join(root, name)
