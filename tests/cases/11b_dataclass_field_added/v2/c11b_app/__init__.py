"""Outbound connections (11b_dataclass_field_refused: a dataclass gains a field)."""
