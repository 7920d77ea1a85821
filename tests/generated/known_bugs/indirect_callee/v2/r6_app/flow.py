from .text import clean


def stream(items):
    for item in items:
        yield clean(item, 3)
