"""Sessions with a CSRF token."""


class Session:
    def __init__(self, user):
        self.user = user
        self.csrf = ""

    def check_csrf(self, token):
        return token == self.csrf
