"""Request handlers."""


class Handler:
    def allowed(self, user):
        return "guest" not in user


class AdminHandler(Handler):
    def allowed(self, user):
        return user.startswith("admin")
