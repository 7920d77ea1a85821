"""A subclass defined in another module."""

from c13_app.handlers import Handler


class ApiHandler(Handler):
    def handle(self, path):
        resp = super().handle(path)
        resp["api"] = True
        return resp
