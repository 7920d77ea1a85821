"""Handlers whose arguments a framework converts by their annotations (pydantic/FastAPI
style): the fix changes annotations only, the bodies are the same."""
import functools


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def transfer(amount: float, to: str, *, memo: str = "") -> dict:
    return {"amount": amount, "to": to, "memo": memo}


@functools.lru_cache(maxsize=None)
def refund(amount: float) -> dict:
    return {"refund": amount}


@logged
def audit(amount: float) -> str:
    return f"audit {amount!r}"


class Account:
    Cents = int

    def withdraw(self, amount: float) -> "Account":
        self.last = amount
        return self.last

    @staticmethod
    def parse(raw: float) -> float:
        return raw
