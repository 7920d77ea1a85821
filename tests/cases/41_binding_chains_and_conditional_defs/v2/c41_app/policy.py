import typing

try:
    import c41_no_such_codec as codec
except ImportError:
    HAS_CODEC = False
else:
    if getattr(codec, "broken", False):
        HAS_CODEC = False
    else:
        HAS_CODEC = True


class Options(typing.TypedDict):
    total: int


class Policy:
    HEADERS = frozenset(["Cookie", "Authorization", "Proxy-Authorization"])
    DECODERS = ["gzip"]
    if not HAS_CODEC:
        DECODERS += ["identity"]
    DECODERS += ["deflate"]

    def __init__(self, total=3, remove=HEADERS):
        self.total = total
        self.remove = remove

    def describe(self):
        return f"{self.total}:{','.join(sorted(self.remove))}"


Policy.DEFAULT = Policy(3)

if not HAS_CODEC:
    def fallback():
        return "fallback v2"


class Context:
    def __init__(self):
        self.loaded = []

    def load(self, name):
        self.loaded.append(name)


_context = Context()
_context.load("bundle")


def context_state():
    return ",".join(_context.loaded)
