"""``python -m suture.tooling.cli`` is the ``suture`` command."""

from . import main

main()
