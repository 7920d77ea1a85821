"""SQL fragments."""


class Fragment:
    def __init__(self, text):
        self.text = text

    def render(self):
        return self.text


class Literal(Fragment):
    """A value rendered as a quoted SQL string literal."""

    def __init__(self, value):
        super().__init__("'%s'" % str(value).replace("'", "''"))


LIMIT = 50
