"""Which URLs may be rendered as links."""

_SAFE_SCHEMES = ("HTTP", "HTTPS", "MAILTO", "FTP")
_BLOCKED = frozenset(("ftp",))
ALLOWED = frozenset(s.lower() for s in _SAFE_SCHEMES if s.lower() not in _BLOCKED)


def scheme_of(url):
    head, sep, _ = url.partition(":")
    return head.strip().lower() if sep else ""


def is_safe(url):
    scheme = scheme_of(url)
    return not scheme or scheme in ALLOWED
