from .text import clean
from . import text

_clean = clean


def stream(items):
    for item in items:
        yield clean(item)


def aliased(items):
    for item in items:
        yield _clean(item)


def dotted(items):
    for item in items:
        yield text.clean(item)
