"""Link sanitising (61_new_name_read_in_genexpr)."""
