"""Hooks for case 43b: parts compiled by the old code were never suffixed."""


def _unsuffixed(part):
    part.suffixed = False


MIGRATIONS = {"c43b_app.rules:RulePart": _unsuffixed}
