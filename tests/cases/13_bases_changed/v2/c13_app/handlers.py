"""Handlers."""


class Base:
    def respond(self, path):
        return {"status": 200, "path": path}


class AuditMixin:
    def audit(self, path, decision):
        return "%s %s %s" % (type(self).__name__, decision, path)


class Handler(Base, AuditMixin):
    def handle(self, path):
        if ".." in path.split("/"):
            return {"status": 403, "audit": self.audit(path, "deny")}
        return self.respond(path)
