class Size(int):
    """A size the fix checks: new in the fixed release, read by an annotation."""

    def __new__(cls, raw):
        value = int(raw)
        if value < 0:
            raise ValueError("negative size")
        return super().__new__(cls, value)


def clamp(n: int, hi: int = 10) -> int:
    if n < 0:
        raise ValueError("negative")
    return min(n, hi)


def fetch(url: str, *, timeout: int = 5) -> str:
    return f"{url} in {timeout}s (checked)"


def tag(label: Size) -> str:
    return f"<{label!r}>"


def strip(text):
    return text.strip().lower()


class Quota:
    Unit = int

    def take(self, amount: Unit) -> Unit:
        if amount > 100:
            raise ValueError("over quota")
        return amount


def describe(n: int) -> str:
    """New in the fixed release: one more annotated function (on 3.14+ one more
    __annotate__ code object in the module)."""
    return f"size {clamp(n)}"
