"""Templates (65b_new_class_through_reexport_chain)."""
