from .util import clean
from . import util

def stream(items):
    for i in items:
        yield clean(i, 3)

def other(items):
    for i in items:
        yield util.clean(i, 3)
