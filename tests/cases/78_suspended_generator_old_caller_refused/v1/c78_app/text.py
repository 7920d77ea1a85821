"""A stream of cleaned lines; 2.0 gives clean() a required limit (case 78)."""


def clean(s):
    return s.strip()


def stream(items):
    for item in items:
        yield clean(item)
