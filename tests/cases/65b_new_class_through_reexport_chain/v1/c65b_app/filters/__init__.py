"""Template filters (re-exported from their submodules)."""

from .text import upper
