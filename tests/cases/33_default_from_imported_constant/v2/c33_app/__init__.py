"""Uploads (33_default_from_imported_constant: a default reads an imported constant)."""
