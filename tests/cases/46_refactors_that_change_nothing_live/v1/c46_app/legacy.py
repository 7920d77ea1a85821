"""Only the old version has this module; nothing in the new one imports it."""


def old_helper():
    return "legacy"
