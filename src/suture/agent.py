"""Opt in to live patching from inside a program: ``suture.agent.start()``.

Starts the agent (a daemon thread blocked on a Unix socket, see
docs/live-processes.md) so that ``suture apply PID`` can reach this process.
Importing this module starts nothing. Standard library only: it imports the
runtime, never the tooling, so it works where only the runtime is present.
"""

from suture.runtime._agent import AgentStartError, running, socket_path, start, stop

__all__ = ["start", "stop", "running", "socket_path", "AgentStartError"]
