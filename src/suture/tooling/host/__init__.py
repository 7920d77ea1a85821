"""Host-side control of one process at a time: the agent protocol's client
(``client``), loading the agent into a running process (``attach``, with
``_gdb_inject``, the script that runs inside gdb) and starting a program with it
(``run``).

May import: ``suture.runtime`` only. Everything that acts on many processes at once
(fan-out, watched rollouts, feeds, the daemon) is in ``tooling/fleet`` and imports this.
"""
