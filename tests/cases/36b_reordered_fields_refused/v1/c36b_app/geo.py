from dataclasses import dataclass


@dataclass
class Point:
    x: int
    y: int


def norm1(p):
    return abs(p.x) + abs(p.y)
