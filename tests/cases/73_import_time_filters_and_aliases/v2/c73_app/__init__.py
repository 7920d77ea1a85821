from . import packages, detect

__version__ = "1.1"
