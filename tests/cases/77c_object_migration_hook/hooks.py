"""Case 77c: the reviewed migration for Conn._greeted, both ways.

Forward: a connection built by the old code greeted if its log says so. Back: the old
code never reads _greeted, so nothing is needed (REVERT_MIGRATIONS is shown for form).
"""


def _greeted(conn):
    conn._greeted = "hello" in conn.log


MIGRATIONS = {"c77c_app.conn:Conn": _greeted}
REVERT_MIGRATIONS = {}
