from typing import TypedDict

try:
    import c41_no_such_codec as codec
except ImportError:
    codec = None


class Options(TypedDict):
    total: int


class Policy:
    HEADERS = frozenset(["Cookie", "Authorization"])
    DECODERS = ["gzip"]
    if codec is not None:
        DECODERS += ["codec"]
    DECODERS += ["deflate"]

    def __init__(self, total=3, remove=HEADERS):
        self.total = total
        self.remove = remove

    def describe(self):
        return f"{self.total}:{','.join(sorted(self.remove))}"


Policy.DEFAULT = Policy(3)

if codec is None:
    def fallback():
        return "fallback v1"


class Context:
    def __init__(self):
        self.loaded = []

    def load(self, name):
        self.loaded.append(name)


def context_state():
    return "no context"
