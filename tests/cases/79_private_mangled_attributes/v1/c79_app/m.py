import threading  # noqa: F401  (v2 uses it)


class Box:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)
        return len(self.items)
