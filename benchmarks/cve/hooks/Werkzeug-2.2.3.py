"""Hook for Werkzeug 2.2.2 -> 2.2.3: give rule parts built before the patch the new field.

2.2.3 adds the dataclass field ``RulePart.suffixed`` (no default). Rule parts are built
when a rule is compiled, usually at start-up, and the new ``StateMachineMatcher.match``
reads ``test_part.suffixed`` on every request: without this migration every dynamic
route of a running app would raise AttributeError after the patch.

``False`` is exactly what the old code meant: 2.2.2 never builds a suffixed part (its
regexes have no ``(?<!/)(/?)`` group for the matcher to pop), so a part compiled by 2.2.2
keeps matching as it did. Rules compiled after the patch get the new parse.

Why no mechanism derives it (issue 15): the objects to migrate are built at run time
(rule parts compiled when the application's URL map is), not at import, so no fresh
import of either release holds one and the state manifest cannot say what they need;
the value the old code meant is a reading of the old parser, not of any state. Objects
built before a patch are issue 21's subject (derived migrations).
"""


def _unsuffixed(part):
    if "suffixed" not in vars(part):
        part.suffixed = False


MIGRATIONS = {"werkzeug.routing.rules:RulePart": _unsuffixed}
