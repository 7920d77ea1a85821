"""WHERE clauses."""

from . import sql

ANONYMOUS = sql.Literal("anonymous")


def where_user(name):
    return "WHERE user = " + sql.Literal(name).render()


def where_default():
    return "WHERE user = " + ANONYMOUS.render()
