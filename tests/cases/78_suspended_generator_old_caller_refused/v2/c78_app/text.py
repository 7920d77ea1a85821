"""A stream of cleaned lines; 2.0 gives clean() a required limit (case 78)."""


def clean(s, limit):
    return s.strip()[:limit]


def stream(items):
    for item in items:
        yield clean(item, 3)
