LIMIT = 2


class Box:
    def __init__(self):
        self.items = []
        self.limit = LIMIT

    def put(self, x):
        if len(self.items) >= self.limit:
            return "full"
        self.items.append(x)
        return len(self.items)


def configure(n):
    global LIMIT
    LIMIT = n
