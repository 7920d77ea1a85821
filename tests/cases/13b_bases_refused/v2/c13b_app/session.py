"""Sessions with a CSRF token."""


class _CsrfSlot:
    __slots__ = ("csrf",)


class Session(_CsrfSlot):
    def __init__(self, user):
        self.user = user
        self.csrf = "tok-" + user

    def check_csrf(self, token):
        return bool(token) and token == self.csrf
