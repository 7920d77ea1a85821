"""Sessions (10_init_new_attr: __init__ sets a new attribute that a new method uses)."""
