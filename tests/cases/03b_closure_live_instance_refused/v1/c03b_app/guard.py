"""Prefix guards for served paths."""


def make_prefix_guard(root):
    def allowed(path):
        return path.startswith(root)
    return allowed
