"""Quotas (30_lru_cache_other_module: a cache in an unchanged module holds answers of changed code)."""
