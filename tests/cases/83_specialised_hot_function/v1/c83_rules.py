LIMIT = 100


def allowed(n):
    return n <= LIMIT


class Box:
    def __init__(self, n):
        self.n = n

    def ok(self):
        return self.n % 7 != 3
