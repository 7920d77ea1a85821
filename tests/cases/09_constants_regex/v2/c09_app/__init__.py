"""Account names (case 09: a constant and a compiled regex change)."""
