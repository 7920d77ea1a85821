import logging
from typing import Dict

_log = logging.getLogger(__name__)
_state: Dict[str, str] = {}

try:
    from c46_no_such_module import classify
except ImportError:
    _log.debug("no classifier")

    def classify(name):
        return "checked " + name.strip()


def _wrap(name):
    def call(self, *args):
        return f"{name}{args}"
    return call


class Sandbox:
    for __name in ["open", "stat"]:
        locals()[__name] = _wrap(__name)

    def describe(self):
        return "sandbox v2"
