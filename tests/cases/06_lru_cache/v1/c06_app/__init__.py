"""Access control (case 06: cached security decisions)."""
