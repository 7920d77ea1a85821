import logging

_log = logging.getLogger(__name__)
__import__("c46_app.legacy")
_state = {}

try:
    from c46_no_such_module import classify
except ImportError:
    _log.debug("no classifier")

    def classify(name):
        return "plain " + name


def _wrap(name):
    def call(self, *args):
        return f"{name}{args}"
    return call


class Sandbox:
    for name in ["open", "stat"]:
        locals()[name] = _wrap(name)

    def describe(self):
        return "sandbox v1"
