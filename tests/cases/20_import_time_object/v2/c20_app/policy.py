"""Login throttling policies."""


class Policy:
    def __init__(self, max_attempts=5, lockout_seconds=300):
        self.max_attempts = max_attempts
        self.lockout_seconds = lockout_seconds

    def allows(self, attempts):
        return attempts < self.max_attempts


DEFAULT = Policy()
STRICT = Policy(3, lockout_seconds=900)


def login_allowed(attempts, policy=None):
    return (policy or DEFAULT).allows(attempts)
