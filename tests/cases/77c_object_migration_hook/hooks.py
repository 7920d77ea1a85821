"""Case 77c: the reviewed migrations for Conn._greeted, both ways.

Forward: a connection built by the old code greeted if its log says so.
Back: the vulnerable code never reads ``_greeted`` and asks no hello, so the flag the fixed
code recorded can be dropped: the revert may go ahead (without this entry it refuses,
SUT-E209, since the engine cannot tell a harmless flag from an agreement with a peer).
"""


def _greeted(conn):
    conn._greeted = "hello" in conn.log


def _forget(conn):
    """Nothing to give back: the vulnerable code ignores ``_greeted``. (It must stay: a
    revert migration runs before the undo, while the fixed code still reads it.)"""


MIGRATIONS = {"c77c_app.conn:Conn": _greeted}
REVERT_MIGRATIONS = {"c77c_app.conn:Conn": _forget}
