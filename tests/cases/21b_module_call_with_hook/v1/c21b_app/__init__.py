"""Admin routes (21b_module_call_with_hook: a module-level registration call changes)."""
