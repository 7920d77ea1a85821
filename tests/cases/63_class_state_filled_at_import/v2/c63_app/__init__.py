"""Storage backends (63_class_state_filled_at_import)."""
