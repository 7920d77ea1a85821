from .errors import Described, ParseError, UnsupportedCoding

KNOWN = ("gzip", "deflate", "chunked")


def codings(header):
    parts = [p.strip() for p in header.split(",")]
    if not parts or parts[-1] != "chunked":
        raise ParseError("chunked must come last")
    for p in parts:
        if p not in KNOWN:
            raise UnsupportedCoding(p)
    return parts


class Mixin:
    kind = "mixin"


class Handler(Mixin, Described):
    pass


def describe():
    h = Handler()
    return h.describe() if hasattr(h, "describe") else "plain"
