"""Sessions (35_class_gains_first_base: a class without bases gains a mixin)."""
