"""Query building (65_new_class_used_as_module_attribute)."""
