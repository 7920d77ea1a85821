"""A meter whose step 2.0 hard-codes (case 77d)."""


class Meter:
    def __init__(self):
        self.count = 0

    def tick(self):
        return 2
