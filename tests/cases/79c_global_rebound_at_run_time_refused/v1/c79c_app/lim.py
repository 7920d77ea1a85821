LIMIT = 2


class Box:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)
        return len(self.items)


def configure(n):
    global LIMIT
    LIMIT = n
