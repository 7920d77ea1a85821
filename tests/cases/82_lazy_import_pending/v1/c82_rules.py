LIMIT = 100


def allowed(n):
    return n <= LIMIT
