LIMIT = 10


def allowed(n):
    return 0 <= n <= LIMIT


class Box:
    def __init__(self, n):
        self.n = n

    def ok(self):
        return self.n % 7 != 3 and self.n >= 0
