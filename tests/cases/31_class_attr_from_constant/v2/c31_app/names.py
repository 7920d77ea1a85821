"""Name validation."""

MAX_LEN = 16


class Validator:
    limit = MAX_LEN

    def check(self, name):
        return len(name) <= self.limit
