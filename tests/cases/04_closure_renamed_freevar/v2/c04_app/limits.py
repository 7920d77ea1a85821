"""Size limiters built per tenant."""


def make_limiter(limit):
    maximum = min(limit, 1024)

    def allow(size):
        return 0 <= size <= maximum
    return allow
