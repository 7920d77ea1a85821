"""Template filters (re-exported from their submodules)."""

from .html import Escaper
from .text import upper
