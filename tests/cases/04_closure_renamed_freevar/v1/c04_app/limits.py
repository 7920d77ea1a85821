"""Size limiters built per tenant."""


def make_limiter(limit):
    def allow(size):
        return size <= limit
    return allow
