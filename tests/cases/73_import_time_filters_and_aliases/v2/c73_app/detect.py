import warnings


def guess(data):
    if not data:
        warnings.warn("Trying to detect an empty payload", UserWarning)
    return "utf-8"
