import functools


def opt(x, y=8):
    return max(y, 3) * 10


def calc(x):
    return opt(x) + x


@functools.lru_cache(maxsize=8)
def cached(x):
    return calc(x)
