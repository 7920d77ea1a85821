"""WHERE clauses."""


def where_user(name):
    return "WHERE user = '%s'" % name


def where_default():
    return "WHERE user = 'anonymous'"
