"""Roles (12_enum_member_refused: an Enum gains a member)."""
