"""Static file service (case 01: one function reached through many aliases)."""
