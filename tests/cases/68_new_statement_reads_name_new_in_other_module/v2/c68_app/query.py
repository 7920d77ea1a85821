"""WHERE clauses."""

from . import sql

ANONYMOUS = sql.Literal("anonymous")
MAX_ROWS = sql.LIMIT * 2


def where_user(name):
    return "WHERE user = " + sql.Literal(name).render()


def where_default():
    return "WHERE user = " + ANONYMOUS.render() + " LIMIT %d" % MAX_ROWS
