from .text import clean
from . import text

_clean = clean


def stream(items):
    for item in items:
        yield clean(item, 3)


def aliased(items):
    for item in items:
        yield _clean(item, 3)


def dotted(items):
    for item in items:
        yield text.clean(item, 3)
