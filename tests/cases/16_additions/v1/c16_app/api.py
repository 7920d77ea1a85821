"""Upload API."""


class Uploader:
    def __init__(self, root):
        self.root = root

    def target(self, name):
        return self.root + "/" + name


def handle_upload(uploader, name):
    return "stored " + uploader.target(name)
