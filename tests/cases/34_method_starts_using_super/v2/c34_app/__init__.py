"""Handlers (34_method_starts_using_super: a method gains a super() call)."""
