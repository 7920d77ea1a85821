"""HTML output (62b_class_body_if_reads_changed_constant)."""
