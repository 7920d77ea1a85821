from .errors import ParseError


def codings(header):
    parts = [p.strip() for p in header.split(",")]
    if not parts or parts[-1] != "chunked":
        raise ParseError("chunked must come last")
    return parts


class Mixin:
    kind = "mixin"


class Handler(Mixin):
    pass


def describe():
    h = Handler()
    return h.describe() if hasattr(h, "describe") else "plain"
