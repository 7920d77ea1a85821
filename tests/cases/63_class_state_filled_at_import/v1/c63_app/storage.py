"""Storage backends, registered by URL scheme when their class is defined."""

import posixpath
from typing import Generic, TypeVar

T = TypeVar("T")


class Backend(Generic[T]):
    registry = {}

    def __init_subclass__(cls, scheme=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if scheme is not None:
            Backend.registry[scheme] = cls

    def resolve(self, path):
        raise NotImplementedError


class FileBackend(Backend[bytes], scheme="file"):
    root = "/srv/data"

    def resolve(self, path):
        return posixpath.join(self.root, path)


class MemoryBackend(Backend[str], scheme="mem"):
    def resolve(self, path):
        return "mem:" + path


def open_url(url):
    scheme, _, path = url.partition("://")
    return Backend.registry[scheme]().resolve(path)
