"""Field validators (19_shared_code: many functions share one code object)."""
