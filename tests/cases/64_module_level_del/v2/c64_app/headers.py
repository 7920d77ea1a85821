"""Header value validation."""


def _build_forbidden():
    return frozenset(chr(c) for c in list(range(0, 32)) + [127] if chr(c) != "\t")


_FORBIDDEN = _build_forbidden()
del _build_forbidden


def valid_value(value):
    return not any(ch in _FORBIDDEN for ch in value)
