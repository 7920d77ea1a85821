"""Which URLs may be rendered as links."""

_SCHEMES = ("http", "https", "mailto", "ftp", "javascript", "data")
_BLOCKED = frozenset(("javascript", "data", "vbscript"))
ALLOWED = frozenset(s for s in _SCHEMES if s not in _BLOCKED)


def scheme_of(url):
    head, sep, _ = url.partition(":")
    return head.strip().lower() if sep else ""


def is_safe(url):
    scheme = scheme_of(url)
    return not scheme or scheme in ALLOWED
