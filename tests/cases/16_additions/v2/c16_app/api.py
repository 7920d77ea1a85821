"""Upload API."""


class Rejection:
    def __init__(self, name, reason):
        self.name = name
        self.reason = reason

    def render(self):
        return "rejected %r: %s" % (self.name, self.reason)


def _clean(name):
    return name.strip()


class Uploader:
    def __init__(self, root):
        self.root = root

    def target(self, name):
        return self.root + "/" + name

    def check(self, name, validators):
        return validators.problem(_clean(name))


def handle_upload(uploader, name):
    from c16_app import validators

    reason = uploader.check(name, validators)
    if reason:
        return Rejection(name, reason).render()
    return "stored " + uploader.target(_clean(name))
