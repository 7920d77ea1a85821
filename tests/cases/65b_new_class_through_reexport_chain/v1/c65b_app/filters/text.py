def upper(value):
    return value.upper()
