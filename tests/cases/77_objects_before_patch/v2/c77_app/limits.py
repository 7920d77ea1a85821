"""A parser built at start-up; 2.0 adds a size limit, a lock and a flag (case 77)."""

import threading

DEFAULT_MAX = 3


class Parser:
    def __init__(self, name, max_items=DEFAULT_MAX, *, on_limit="refuse"):
        self.name = name
        self.seen = []
        self.max_items = max_items
        self.on_limit = on_limit
        self._guard = threading.RLock()
        self.limit_text = "limit %d" % DEFAULT_MAX

    def feed(self, item):
        with self._guard:
            if len(self.seen) >= self.max_items:
                if self.on_limit == "refuse":
                    return self.limit_text
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
    def __init__(self, cap=2):
        self.used = 0
        self.cap = cap

    def take(self):
        if self.used >= self.cap:
            return "over"
        self.used += 1
        return self.used
