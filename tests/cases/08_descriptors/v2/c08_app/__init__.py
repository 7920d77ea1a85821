"""Uploads (case 08: property, classmethod and staticmethod change)."""
