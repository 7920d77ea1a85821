"""Hook for Werkzeug 2.2.2 -> 2.2.3: give rule parts built before the patch the new field.

2.2.3 adds the dataclass field ``RulePart.suffixed`` (no default). Rule parts are built
when a rule is compiled, usually at start-up, and the new ``StateMachineMatcher.match``
reads ``test_part.suffixed`` on every request: without this migration every dynamic
route of a running app would raise AttributeError after the patch.

``False`` is exactly what the old code meant: 2.2.2 never builds a suffixed part (its
regexes have no ``(?<!/)(/?)`` group for the matcher to pop), so a part compiled by 2.2.2
keeps matching as it did. Rules compiled after the patch get the new parse.
"""


def _unsuffixed(part):
    if "suffixed" not in vars(part):
        part.suffixed = False


MIGRATIONS = {"werkzeug.routing.rules:RulePart": _unsuffixed}
