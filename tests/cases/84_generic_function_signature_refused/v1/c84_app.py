def first[T](items: list[T]) -> T:
    return items[0]


def clamp[N: (int, float)](n: N, hi: N) -> N:
    return min(n, hi)


class Box[T]:
    def put(self, item: T) -> list[T]:
        return [item]
