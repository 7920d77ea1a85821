"""WHERE clauses."""

from . import sql

ANONYMOUS = sql.Fragment("'anonymous'")


def where_user(name):
    return "WHERE user = " + sql.Fragment("'%s'" % name).render()


def where_default():
    return "WHERE user = " + ANONYMOUS.render()
