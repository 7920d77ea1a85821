"""Request parsing (case 02: default argument values change)."""
