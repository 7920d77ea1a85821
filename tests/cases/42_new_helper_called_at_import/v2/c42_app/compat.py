import importlib
import sys


def _resolve_codec():
    for name in ("c42_missing_codec", "pickle"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    return None


codec = _resolve_codec()

if sys.platform == "c42-never":
    def registry_lookup(key):
        return "v2 " + key


def describe():
    return f"{codec.__name__ if codec else None}"
