"""Case 70: an HTTP client package; the fix lowers a limit in ``limits``."""
