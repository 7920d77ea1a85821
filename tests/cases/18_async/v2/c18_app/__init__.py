"""Async fetcher (18_async: coroutine and async generator bodies change)."""
