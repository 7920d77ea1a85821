"""Handler hierarchy."""


class Handler:
    def handle(self, path):
        return ["served " + path]


class SafeHandler(Handler):
    def handle(self, path):
        out = super().handle(path)
        out.append(__class__.__name__ + " checked")
        return out
