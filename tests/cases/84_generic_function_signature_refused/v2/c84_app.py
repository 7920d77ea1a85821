def first[T](items: list[T]) -> T:
    return items[0]


def clamp[N: int](n: N, hi: N) -> N:
    if n < 0:
        raise ValueError("negative")
    return min(n, hi)


class Box[T]:
    def put(self, item: T | None) -> list[T]:
        return [item] if item is not None else []
