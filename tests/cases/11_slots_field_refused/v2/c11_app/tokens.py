"""API tokens."""


class Token:
    __slots__ = ("value", "scope")

    def __init__(self, value, scope="read"):
        self.value = value
        self.scope = scope

    def allows(self, action):
        return bool(self.value) and (action == "read" or self.scope == "write")
