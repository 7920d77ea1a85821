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
        return self._inside_root(posixpath.join(self.root, path))

    def _inside_root(self, full):
        full = posixpath.normpath(full)
        if not full.startswith(self.root + "/"):
            raise ValueError("path escapes the storage root: %r" % full)
        return full


class MemoryBackend(Backend[str], scheme="mem"):
    def resolve(self, path):
        return "mem:" + path


def open_url(url):
    scheme, _, path = url.partition("://")
    return Backend.registry[scheme]().resolve(path)
