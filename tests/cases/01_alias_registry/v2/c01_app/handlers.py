"""Handlers that reach safe_join through aliases, a registry and callbacks."""

import functools
import types

from c01_app.paths import safe_join

join_upload = safe_join

RESOLVERS = {"static": safe_join, "upload": join_upload}

CALLBACKS = [
    functools.partial(safe_join, "/srv/media"),
    types.MethodType(safe_join, "/srv/cache"),
]


class Storage:
    def __init__(self, root, join=safe_join):
        self.root = root
        self.join = join

    def resolve(self, name):
        return self.join(self.root, name)
