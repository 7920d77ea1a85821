from dataclasses import dataclass, field, fields
from typing import Optional


@dataclass
class Part:
    name: str = ""
    data: bytes = b""
    headers: list = field(default_factory=list)
    kind = "part"          # a class attribute, not a field

    def size(self):
        return len(self.data)


EMPTY = Part("empty")


@dataclass(frozen=True)
class Limit:
    value: int = 10


def feed(part, chunk):
    part.data += chunk
    return part


def describe(part):
    return {"repr": repr(part), "fields": [f.name for f in fields(part)],
            "eq_fresh": part == Part(part.name), "size": part.size()}
