"""Header values (17_singledispatch: a singledispatch implementation changes, one is added)."""
