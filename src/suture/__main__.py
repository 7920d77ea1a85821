"""``python -m suture`` is the ``suture`` command."""

from suture.tooling.cli import main

main()
