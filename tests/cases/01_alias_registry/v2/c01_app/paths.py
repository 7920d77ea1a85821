"""Path helpers."""

import posixpath


def safe_join(root, name):
    """Join a user-supplied name below root; None if it escapes root."""
    path = posixpath.normpath(posixpath.join(root, name))
    if not path.startswith(root.rstrip("/") + "/"):
        return None
    return path
