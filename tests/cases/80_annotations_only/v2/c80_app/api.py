"""Handlers whose arguments a framework converts by their annotations (pydantic/FastAPI
style): the fix changes annotations only, the bodies are the same."""
import functools


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def transfer(amount: int, to: str, *, memo: str = "") -> dict:
    return {"amount": amount, "to": to, "memo": memo}


@functools.lru_cache(maxsize=None)
def refund(amount: int) -> dict:
    return {"refund": amount}


@logged
def audit(amount: int) -> str:
    return f"audit {amount!r}"


class Account:
    Cents = int

    def withdraw(self, amount: Cents) -> "Account":
        self.last = amount
        return self.last

    @staticmethod
    def parse(raw: "Account.Cents") -> int:
        return raw
