"""Sessions (10b_init_new_attr_no_hook: __init__ sets a new attribute that a new method uses)."""
