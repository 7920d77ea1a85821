import sys

try:
    import json as codec
except ImportError:
    codec = None

if sys.platform == "c42-never":
    def registry_lookup(key):
        return "v1 " + key


def describe():
    return f"{codec.__name__ if codec else None}"
