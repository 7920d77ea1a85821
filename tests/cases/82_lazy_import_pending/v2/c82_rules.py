LIMIT = 10


def allowed(n):
    return 0 <= n <= LIMIT
