class ParseError(ValueError):
    pass


class UnsupportedCoding(ParseError):
    def __init__(self, coding):
        super().__init__(f"unsupported transfer coding {coding!r}")
