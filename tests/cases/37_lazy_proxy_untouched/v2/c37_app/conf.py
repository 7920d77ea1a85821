import functools


class LazySettings:
    """Like Django's settings before configure(): any attribute access raises."""

    def __getattribute__(self, name):
        raise RuntimeError(f"settings touched ({name}) before they were configured")


settings = LazySettings()


@functools.lru_cache(maxsize=None)
def limit():
    return 10


def allowed(n):
    return 0 < n <= limit()
