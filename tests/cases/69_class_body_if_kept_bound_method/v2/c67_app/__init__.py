"""HTML output (67_class_body_if_kept_bound_method)."""
