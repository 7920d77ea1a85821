"""Suture: hotpatch running Python processes in memory.

``suture.runtime`` runs inside target processes and uses only the standard
library. ``suture.tooling`` runs outside them (CLI, builder) and never gets
imported by the runtime.
"""

__version__ = "0.1.0"
