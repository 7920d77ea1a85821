from dataclasses import dataclass, field, fields
from typing import Optional


@dataclass
class Part:
    name: str = ""
    data: bytearray = field(default_factory=bytearray)
    headers: list = field(default_factory=list)
    limit: Optional[int] = 1024
    kind = "bounded part"  # a class attribute, not a field

    def size(self):
        return len(self.data)


EMPTY = Part("empty")


@dataclass(frozen=True)
class Limit:
    value: int = 20


def feed(part, chunk):
    if len(part.data) + len(chunk) > part.limit:
        raise ValueError("part too large")
    part.data.extend(chunk)
    return part


def describe(part):
    return {"repr": repr(part), "fields": [f.name for f in fields(part)],
            "eq_fresh": part == Part(part.name), "size": part.size()}
