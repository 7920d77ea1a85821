class ParseError(ValueError):
    pass


class UnsupportedCoding(ParseError):
    def __init__(self, coding):
        super().__init__(f"unsupported transfer coding {coding!r}")


class Described:
    def describe(self):
        return f"{type(self).__name__} ({self.kind})"
