def clamp(n: float, hi: float = 10.0) -> float:
    return min(n, hi)


def fetch(url: str, *, timeout: float = 30.0) -> str:
    return f"{url} in {timeout}s"


def tag(label):
    return f"<{label}>"


def strip(text: str) -> str:
    return text.strip()


class Quota:
    Unit = int

    def take(self, amount: float) -> float:
        return amount
