"""Login policy (20_import_time_object: objects built at import time change)."""
