"""Tiny web app (case 05: a decorated view changes)."""
