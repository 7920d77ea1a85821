from dataclasses import dataclass


@dataclass
class Point:
    y: int
    x: int


def norm1(p):
    return abs(p.x) + abs(p.y)
