class ParseError(ValueError):
    pass


class Described:
    def describe(self):
        return f"{type(self).__name__} ({self.kind})"
