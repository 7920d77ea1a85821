"""Link sanitising (61b_new_name_read_in_genexpr_pending)."""
