"""API tokens (11_slots_field_refused: a __slots__ class gains a slot)."""
