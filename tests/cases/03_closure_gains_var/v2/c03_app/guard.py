"""Prefix guards for served paths."""

import posixpath


def make_prefix_guard(root):
    base = posixpath.normpath(root) + "/"

    def allowed(path):
        return posixpath.normpath(posixpath.join(root, path)).startswith(base)
    return allowed
