import dataclasses
import typing
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections import OrderedDict, deque

if typing.TYPE_CHECKING:
    import fractions


class Pair(NamedTuple):
    left: int
    right: typing.List[typing.Any]


@dataclasses.dataclass(frozen=True)
class Key:
    host: str
    ssl: typing.Union[bool, "typing.Any"] = None


def describe(key):
    return f"{key.host}:{'tls' if key.ssl is True else 'plain'}"


def total(pair):
    return pair.left + 2 * len(pair.right)


if __name__ == "__main__":
    print(total(Pair(1, [2])))
