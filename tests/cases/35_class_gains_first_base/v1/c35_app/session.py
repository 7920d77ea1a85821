"""Sessions."""


class Session:
    def __init__(self, user):
        self.user = user

    def can_export(self):
        return True
