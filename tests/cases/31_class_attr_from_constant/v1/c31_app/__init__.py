"""Names (31_class_attr_from_constant: a class attribute is initialised from a changed constant)."""
