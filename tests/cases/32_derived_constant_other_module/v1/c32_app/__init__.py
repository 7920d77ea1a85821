"""Uploads (32_derived_constant_other_module: a constant derived from an imported one)."""
