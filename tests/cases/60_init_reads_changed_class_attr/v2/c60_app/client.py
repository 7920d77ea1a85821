"""Redirect policy of a small HTTP client."""


class Policy:
    MAX_REDIRECTS = 5

    def __init__(self, retries=3):
        self.retries = retries
        self.max_redirects = self.MAX_REDIRECTS

    def allows_redirect(self, hops):
        return hops <= self.max_redirects


DEFAULT = Policy(3)


def follow(hops, policy=None):
    return (policy or DEFAULT).allows_redirect(hops)
