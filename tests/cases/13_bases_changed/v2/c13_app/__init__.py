"""Handlers (13_bases_changed: a class gains a mixin base)."""
