"""API tokens."""


class Token:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def allows(self, action):
        return bool(self.value)
