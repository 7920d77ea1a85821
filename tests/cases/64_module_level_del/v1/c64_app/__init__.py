"""Header parsing (64_module_level_del)."""
