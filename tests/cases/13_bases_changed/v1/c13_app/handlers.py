"""Handlers."""


class Base:
    def respond(self, path):
        return {"status": 200, "path": path}


class Handler(Base):
    def handle(self, path):
        return self.respond(path)
