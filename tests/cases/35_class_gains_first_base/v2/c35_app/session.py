"""Sessions."""


class ReadOnlyMixin:
    def writable(self):
        return self.user != "guest"


class Session(ReadOnlyMixin):
    def __init__(self, user):
        self.user = user

    def can_export(self):
        return self.writable()
