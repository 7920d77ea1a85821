from .util import clean
from . import util

def stream(items):
    for i in items:
        yield clean(i)

def other(items):
    for i in items:
        yield util.clean(i)
