from dataclasses import dataclass
from typing import ClassVar


@dataclass
class Limits:
    name: str
    cap: ClassVar[int] = 3


def describe(l):
    return f"{l.name}<={l.cap}"
