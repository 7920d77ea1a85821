"""Name validation."""

MAX_LEN = 64


class Validator:
    limit = MAX_LEN

    def check(self, name):
        return len(name) <= self.limit
