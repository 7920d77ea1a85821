"""A package that reads its version from a data file at import (setuptools-scm style)."""

import os

with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="utf-8") as _f:
    __version__ = _f.read().strip()

USER_AGENT = "c67/" + __version__
