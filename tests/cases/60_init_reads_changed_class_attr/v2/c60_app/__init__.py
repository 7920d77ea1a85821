"""HTTP client policy (60_init_reads_changed_class_attr)."""
