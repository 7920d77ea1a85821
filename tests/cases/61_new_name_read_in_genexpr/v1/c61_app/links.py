"""Which URLs may be rendered as links."""

ALLOWED = frozenset(("http", "https", "mailto", "ftp", "javascript", "data"))


def scheme_of(url):
    head, sep, _ = url.partition(":")
    return head.strip().lower() if sep else ""


def is_safe(url):
    scheme = scheme_of(url)
    return not scheme or scheme in ALLOWED
