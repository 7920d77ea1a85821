"""A subclass in another module."""

from c07_app.handlers import SafeHandler


class AuditedHandler(SafeHandler):
    def handle(self, path):
        return super().handle(path) + [type(self).__name__ + " audited"]
