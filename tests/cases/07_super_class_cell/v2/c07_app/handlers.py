"""Handler hierarchy."""


class Handler:
    def handle(self, path):
        return ["served " + path]


class SafeHandler(Handler):
    def handle(self, path):
        if ".." in path.split("/"):
            return [__class__.__name__ + " denied " + path]
        out = super().handle(path)
        out.append(__class__.__name__ + " checked")
        return out
