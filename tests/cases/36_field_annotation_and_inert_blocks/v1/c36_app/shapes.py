import dataclasses
import typing
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections import OrderedDict


class Pair(NamedTuple):
    left: int
    right: typing.List


@dataclasses.dataclass(frozen=True)
class Key:
    host: str
    ssl: typing.Union[bool, None] = None


def describe(key):
    return f"{key.host}:{'tls' if key.ssl else 'plain'}"


def total(pair):
    return pair.left + len(pair.right)
