"""Header value validation."""


def _build_forbidden():
    return frozenset(chr(c) for c in range(0, 32) if chr(c) not in "\t\r\n")


_FORBIDDEN = _build_forbidden()


def valid_value(value):
    return not any(ch in _FORBIDDEN for ch in value)
