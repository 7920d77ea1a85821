"""Storage backends, registered by URL scheme when their class is defined."""

import posixpath
from typing import Generic, TypeVar

T = TypeVar("T")


class Backend:
    registry = {}

    def __init_subclass__(cls, scheme=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if scheme is not None:
            Backend.registry[scheme] = cls


class Store(Generic[T]):
    def __init__(self):
        self.items = {}

    def put(self, key, value: T):
        self.items[key] = value


class FileBackend(Backend, scheme="file"):
    root = "/srv/data"

    def resolve(self, path):
        return posixpath.join(self.root, path)


class MemoryBackend(Backend, scheme="mem"):
    def resolve(self, path):
        return "mem:" + path


def open_url(url):
    scheme, _, path = url.partition("://")
    return Backend.registry[scheme]().resolve(path)
