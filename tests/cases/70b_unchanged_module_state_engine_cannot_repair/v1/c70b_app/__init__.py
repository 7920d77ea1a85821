"""Case 70b: a package whose unchanged module registers a changed limit at import."""
