"""HTML output (62_class_body_if_condition_changed)."""
