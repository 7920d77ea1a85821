"""Link sanitising (61c_changed_name_read_in_genexpr)."""
