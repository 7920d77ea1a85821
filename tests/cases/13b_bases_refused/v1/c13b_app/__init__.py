"""Sessions (13b_bases_refused: a base with an incompatible layout)."""
