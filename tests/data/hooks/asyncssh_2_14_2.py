"""Migration for the asyncssh 2.14.1 -> 2.14.2 patch (CVE-2023-48795, Terrapin).

2.14.2's ``SSHConnection.__init__`` sets ``_strict_kex = False``, and ``_process_kexinit``
turns it on only during the *first* key exchange, when the peer's KEXINIT lists
``kex-strict-[cs]-v00@openssh.com`` (``if not self._session_id``). The fixed
``_recv_packet``/``send_packet``/``_process_kexinit`` read it on every packet.

A connection built by 2.14.1 did its first key exchange with code that never advertised
strict KEX, so strict mode was never agreed and cannot be agreed later: the value that
matches what both peers did is ``False``. ``True`` would be wrong: at the next rekey this
side would reset its sequence numbers on NEWKEYS while the peer does not, and the
connection would fail its MAC checks. So old connections keep the old (non-strict)
behaviour until they close; connections opened after the patch negotiate strict KEX.
The hook names the base class: the engine runs it on its subclasses'
(``SSHClientConnection``, ``SSHServerConnection``) live objects.
"""


def _connection(obj):
    obj._strict_kex = False


MIGRATIONS = {"asyncssh.connection:SSHConnection": _connection}
