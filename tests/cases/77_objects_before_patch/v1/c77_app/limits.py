"""A parser built at start-up; 2.0 adds a size limit, a lock and a flag (case 77)."""

import threading

DEFAULT_MAX = 3


class Parser:
    def __init__(self, name):
        self.name = name
        self.seen = []

    def feed(self, item):
        self.seen.append(item)
        return len(self.seen)

    def legacy_mode(self):
        return self.strict


class StrictParser(Parser):
    def describe(self):
        return "strict " + self.name


DEFAULT = Parser("module-level")
REGISTRY = {"main": Parser("registered")}


class Parser2:
    """Holds a lock that both versions create (unchanged state)."""

    def __init__(self):
        self.lock = threading.Lock()

    def run(self):
        with self.lock:
            return "ran"


Parser.strict = False


class Quota:
    def __init__(self):
        self.used = 0

    def take(self):
        self.used += 1
        return self.used
