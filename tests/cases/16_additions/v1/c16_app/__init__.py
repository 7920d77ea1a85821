"""Uploads (16_additions: the fix adds a function, a method, a class and a module)."""
