"""Admin routes (21_module_call_side_effect: a module-level registration call changes)."""
