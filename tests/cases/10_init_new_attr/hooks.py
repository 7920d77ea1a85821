"""Hooks for case 10: give stores created before the patch what v2's __init__ sets."""


def _migrate_store(store):
    store.max_sessions = 3


MIGRATIONS = {"c10_app.store:SessionStore": _migrate_store}
