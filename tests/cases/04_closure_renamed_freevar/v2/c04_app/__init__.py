"""Upload size limits (case 04: a closure's free variable is renamed)."""
